// Command bench measures imagegen and the worker against what users would
// pick instead, on this machine, in one run, and rewrites bench/RESULTS.md.
// Run it through bench/run, which starts the local build environment.
//
// `bench check-render` is the regression check CI runs (without -race, no
// build environment needed): see checkrender.go.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/platform"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

var (
	runs    = flag.Int("runs", 3, "runs per measurement")
	only    = flag.String("only", "", "comma-separated sections to run: matrix,compile,kaniko,size,worker,scale,compression (default all; needs --out)")
	out     = flag.String("out", "bench/RESULTS.md", "results file (--only: required, to merge by hand)")
	env     map[string]string
	bin     string // our binaries and the contenders
	root    string // repository root
	work    string // scratch folder
	results strings.Builder
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check-render" {
		os.Exit(checkRender(os.Args[2:]))
	}
	flag.Parse()
	outSet := false
	flag.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	if err := checkOut(*only, outSet); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	root, _ = os.Getwd()
	var err error
	env, err = readEnv(os.Getenv("WGR_DEVENV"))
	if err != nil {
		fail("read the devenv file (run bench/run, which starts scripts/devenv): %v", err)
	}
	bin = filepath.Join(env["WGR_CACHE"], "bin")
	work, err = os.MkdirTemp("", "wgr-bench-")
	if err != nil {
		fail("%v", err)
	}
	atCleanup(func() { os.RemoveAll(work) })
	defer runCleanups()
	cleanupOnSignal()
	sections := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s != "" {
			sections[s] = true
		}
	}
	want := func(s string) bool { return len(sections) == 0 || sections[s] }

	buildTools()
	header()
	if want("matrix") {
		matrixBench()
	}
	if want("compile") {
		compileBench()
	}
	if want("kaniko") {
		kanikoBench()
	}
	if want("size") {
		sizeBench()
	}
	if want("worker") {
		workerBench()
	}
	if want("scale") {
		scaleBench()
	}
	if want("compression") {
		compressionBench()
	}
	if err := os.WriteFile(*out, []byte(results.String()), 0o644); err != nil {
		fail("%v", err)
	}
	fmt.Println("wrote", *out)
}

// runnerVersion is the runner release of variants.hcl, the one devenv's
// mirror serves.
func runnerVersion(root string) string {
	src, err := os.ReadFile(filepath.Join(root, "variants.hcl"))
	if err != nil {
		fail("%v", err)
	}
	v, _, err := variants.RunnerDefaults("variants.hcl", src)
	if err != nil {
		fail("%v", err)
	}
	return v
}

func logf(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) }

func readEnv(p string) (map[string]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "export "), "="); ok && !strings.HasPrefix(l, "#") {
			m[k] = strings.Trim(v, "'")
		}
	}
	return m, nil
}

// sh runs a command with the devenv environment; it fails the bench on error.
func sh(extra []string, name string, args ...string) (string, time.Duration) {
	o, d, err := try(extra, name, args...)
	if err != nil {
		fail("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(o, 30))
	}
	return o, d
}

func try(extra []string, name string, args ...string) (string, time.Duration, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, extra...)
	start := time.Now()
	o, err := cmd.CombinedOutput()
	return string(o), time.Since(start), err
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func buildTools() {
	logf("building imagegen, the worker and the contenders' inputs")
	sh([]string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", filepath.Join(work, "imagegen"), "./cmd/imagegen")
	sh([]string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(work, "worker"), "./cmd/worker")
}

// buildBuildx builds buildx, the matrix section's contender, once.
func buildBuildx() {
	if _, err := os.Stat(filepath.Join(bin, "buildx")); err != nil {
		logf("building buildx v0.38.2 from the module proxy (about 3 min, once)")
		cmd := exec.Command("go", "install", "github.com/docker/buildx/cmd/buildx@v0.38.2")
		cmd.Dir = os.TempDir()
		cmd.Env = append(os.Environ(), "GOBIN="+bin)
		if o, err := cmd.CombinedOutput(); err != nil {
			fail("build buildx: %v\n%s", err, o)
		}
	}
}

// stamped reads the version scripts/devenv recorded for a binary it built
// from the module proxy (such builds carry no VCS stamp of their own).
func stamped(file, def string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return def + " (built from the module proxy)"
	}
	return strings.TrimSpace(string(b)) + " (built from the module proxy)"
}

func header() {
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.+)`).FindSubmatch(b); m != nil {
			cpu = string(m[1])
		}
	}
	var si syscall.Sysinfo_t
	syscall.Sysinfo(&si)
	var uts syscall.Utsname
	syscall.Uname(&uts)
	rel := func(a [65]int8) string {
		var b []byte
		for _, c := range a {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		return string(b)
	}
	fmt.Fprintf(&results, "# Benchmarks\n\nWritten by `bench/run` on %s, on this machine, %d runs per measurement; reproduce with `bench/run`. A section measured in a run of its own (`bench/run --runs 5 --only compression --out /tmp/compression.md`, merged by hand) says so, with its date and runs, where it starts.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *runs)
	fmt.Fprintf(&results, "## Machine and versions\n\n| | |\n|---|---|\n| CPU | %s, %d cores |\n| memory | %.1f GiB |\n| kernel | %s |\n| Go | %s |\n| buildkitd / buildctl | %s |\n| buildx | %s |\n| Kaniko executor | v1.23.2 (from the module proxy) |\n| registry | Debian docker-registry (distribution 2.8) on 127.0.0.1:5000 |\n| runs per measurement | %d (median, with min-max) |\n\n",
		cpu, runtime.NumCPU(), float64(si.Totalram)*float64(si.Unit)/(1<<30), rel(uts.Release), runtime.Version(),
		stamped(filepath.Join(bin, "buildkit.version"), "v0.34.2"), "v0.38.2 (built from the module proxy)", *runs)
	results.WriteString("Base images are the offline stand-ins `scripts/devenv` publishes (Debian bookworm minbase under the names `ubuntu:24.04` and `nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04`), and the runner is the small fake tarball: absolute build times and sizes are smaller than with the real 211 MB runner and the CUDA base, and every contender gets the same inputs. RUN steps reach Debian's mirror over the network, so cold builds include apt downloads.\n\n")
}

type stat struct{ values []float64 }

func (s *stat) add(v float64) { s.values = append(s.values, v) }
func (s stat) median() float64 {
	v := append([]float64{}, s.values...)
	sort.Float64s(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
func (s stat) spread() string {
	v := append([]float64{}, s.values...)
	sort.Float64s(v)
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f-%.2f", v[0], v[len(v)-1])
}

func buildctl(args ...string) (string, time.Duration) {
	return sh(nil, filepath.Join(bin, "buildctl"), append([]string{"--addr", env["BUILDKIT_HOST"]}, args...)...)
}

func prune() { buildctl("prune", "--all") }

// prepareContext writes the worker binary (stamped with version) and the
// rendered Dockerfiles the contenders build from.
func prepareContext(dir, version string) {
	os.MkdirAll(dir, 0o755)
	p := benchPlatform()
	sh([]string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.GOARCH}, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", workerBin(dir), "./cmd/worker")
}

// benchPlatform is the one platform the benchmarks build for.
func benchPlatform() platform.Platform {
	p, _ := platform.Lookup("linux/amd64")
	return p
}

// workerBin is the worker binary's path in a build context.
func workerBin(ctxDir string) string {
	return filepath.Join(ctxDir, platform.WorkerBinary(benchPlatform().Name))
}

// workerBinFlag is imagegen's --worker-bin value for a build context.
func workerBinFlag(ctxDir string) string { return benchPlatform().Name + "=" + workerBin(ctxDir) }

func renderDockerfiles(dir string) {
	sh(nil, filepath.Join(work, "imagegen"), "render", "--no-lint", "--out", dir)
}

func matrixBench() {
	logf("matrix builds: imagegen vs buildx bake vs buildctl per variant")
	buildBuildx()
	dfDir := filepath.Join(work, "dockerfiles")
	renderDockerfiles(dfDir)
	bake := filepath.Join(root, "bench", "docker-bake.hcl")
	builder := "wgr-bench"
	try(nil, filepath.Join(bin, "buildx"), "rm", builder)
	sh(nil, filepath.Join(bin, "buildx"), "create", "--name", builder, "--driver", "remote", env["BUILDKIT_HOST"])
	removeBuilder := func() { try(nil, filepath.Join(bin, "buildx"), "rm", builder) }
	defer atCleanup(removeBuilder)()
	defer removeBuilder()

	type contender struct {
		name string
		run  func(ctxDir, reg string) time.Duration
	}
	contenders := []contender{
		{"imagegen build --push", func(ctxDir, reg string) time.Duration {
			_, d := sh([]string{"REGISTRY=" + reg}, filepath.Join(work, "imagegen"), "build", "--push", "--progress", "quiet",
				"--worker-bin", workerBinFlag(ctxDir), "--output", filepath.Join(work, "out", "oci"))
			return d
		}},
		{"buildx bake --push", func(ctxDir, reg string) time.Duration {
			_, d := sh([]string{"REGISTRY=" + reg, "CONTEXT=" + ctxDir, "DOCKERFILES=" + dfDir, "BUILDX_BUILDER=" + builder},
				filepath.Join(bin, "buildx"), "bake", "-f", bake, "--allow=fs.read="+work, "--progress", "quiet")
			return d
		}},
		{"buildctl, one variant after the other", func(ctxDir, reg string) time.Duration {
			var total time.Duration
			for _, v := range []string{"cpu", "gpu"} {
				_, d := buildctl("build", "--frontend", "dockerfile.v0", "--local", "context="+ctxDir, "--local", "dockerfile="+dfDir,
					"--local", "worker="+ctxDir, "--opt", "context:worker=local:worker", "--opt", "context:worker-build=local:worker", "--opt", "filename="+v+".Dockerfile", "--opt", "platform="+benchPlatform().Name, "--progress", "quiet",
					"--output", "type=image,name="+reg+"/worker-github_runner:dev-"+v+",push=true,registry.insecure=true")
				total += d
			}
			return total
		}},
	}
	cold, warm, change := make([]stat, len(contenders)), make([]stat, len(contenders)), make([]stat, len(contenders))
	for r := 0; r < *runs; r++ {
		for i := range contenders {
			c := contenders[(i+r)%len(contenders)] // alternate who goes first
			idx := (i + r) % len(contenders)
			reg := fmt.Sprintf("%s/bench-%d-%d", env["WGR_REGISTRY"], idx, time.Now().UnixNano())
			ctxDir := filepath.Join(work, fmt.Sprintf("ctx-%d-%d", idx, r))
			prepareContext(ctxDir, fmt.Sprintf("bench-%d-%d-a", idx, r))
			prune()
			d := c.run(ctxDir, reg)
			cold[idx].add(d.Seconds())
			d = c.run(ctxDir, reg)
			warm[idx].add(d.Seconds())
			prepareContext(ctxDir, fmt.Sprintf("bench-%d-%d-b", idx, r)) // only the worker changed
			d = c.run(ctxDir, reg)
			change[idx].add(d.Seconds())
			logf("  run %d %-40s cold %.1fs warm %.2fs worker-only %.2fs", r+1, c.name, cold[idx].values[r], warm[idx].values[r], change[idx].values[r])
		}
	}
	results.WriteString("## 1-2. The whole matrix (gpu + cpu), one buildkitd, one registry\n\n")
	results.WriteString("Cold: `buildctl prune --all` first, so base images are pulled and every RUN step runs. Warm: the same build again, nothing changed. Worker-only: the worker binary changed (a new version stamp), nothing else. Every contender pushes to its own repository; all get the same prebuilt worker binary (imagegen with `--worker-bin`) and the same Dockerfiles (imagegen's rendering, so bake and buildctl build exactly what imagegen builds), the binary in place of the Dockerfiles' two worker stages as the named contexts `worker` and `worker-build` (bake's `contexts`, buildctl's `--opt context:NAME=local:worker`). Seconds, wall clock of the whole command.\n\n")
	results.WriteString("| contender | cold | warm | worker-only |\n|---|---|---|---|\n")
	for i, c := range contenders {
		fmt.Fprintf(&results, "| %s | %.1f (%s) | %.2f (%s) | %.2f (%s) |\n", c.name, cold[i].median(), cold[i].spread(), warm[i].median(), warm[i].spread(), change[i].median(), change[i].spread())
	}
	fmt.Fprintf(&results, "\nRatios to imagegen (median/median, above 1 means imagegen is faster): bake cold %.2f, warm %.2f, worker-only %.2f; buildctl sequential cold %.2f, warm %.2f, worker-only %.2f.\n\n",
		cold[1].median()/cold[0].median(), warm[1].median()/warm[0].median(), change[1].median()/change[0].median(),
		cold[2].median()/cold[0].median(), warm[2].median()/warm[0].median(), change[2].median()/change[0].median())
	results.WriteString("imagegen's push is atomic (push by digest, then one tagging pass over the registry after every variant built); bake and buildctl push tags as each target finishes. imagegen also resolves variants.hcl and renders both Dockerfiles within the measured time.\n\n")
}

// copyRepo copies what a build of the worker reads (the module, the
// Dockerfiles, variants.hcl) into dir, where the benchmark can change a
// worker source file without touching the checkout.
func copyRepo(dir string) {
	os.MkdirAll(dir, 0o755)
	for _, p := range []string{"go.mod", "go.sum", "cmd", "internal", "templates", "variants.hcl", ".dockerignore"} {
		sh(nil, "cp", "-a", filepath.Join(root, p), dir)
	}
}

// stampWorker changes the worker's source: a new string the binary keeps.
func stampWorker(dir, stamp string) {
	src := "package main\n\nimport \"os\"\n\nfunc init() {\n\tif os.Getenv(\"WGR_BENCH_STAMP\") == \"print\" {\n\t\tprintln(\"" + stamp + "\")\n\t}\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "cmd", "worker", "bench_stamp.go"), []byte(src), 0o644); err != nil {
		fail("%v", err)
	}
}

// compileBench: imagegen's fast path (the worker compiled on the host and
// given as the named context "worker") against the Dockerfiles compiling
// the worker in their own stage (buildctl, the repository as the context,
// Go's caches as cache mounts), the whole matrix, cold and after a change
// to the worker's source only. Both compile the worker within the time.
func compileBench() {
	logf("worker compile: imagegen's named context vs the Dockerfile's own stage")
	type contender struct {
		name string
		run  func(repo, reg string) time.Duration
	}
	contenders := []contender{
		{"imagegen build --push (worker compiled on the host, named context)", func(repo, reg string) time.Duration {
			// Go's caches of its own, empty for the cold build (as the
			// cache mounts are after the prune): never the machine's.
			goEnv := []string{"GOCACHE=" + repo + ".gocache", "GOMODCACHE=" + repo + ".gomod", "GOFLAGS=-buildvcs=false -modcacherw"}
			_, d := sh(append(goEnv, "REGISTRY="+reg), "sh", "-c", "cd "+repo+" && exec "+filepath.Join(work, "imagegen")+
				" build --push --progress quiet --worker-version bench --output "+filepath.Join(work, "out", "oci"))
			return d
		}},
		{"buildctl, the Dockerfiles compiling the worker (context: the repository)", func(repo, reg string) time.Duration {
			dfDir := filepath.Join(repo, "dockerfiles")
			var total time.Duration
			for _, v := range []string{"cpu", "gpu"} {
				_, d := buildctl("build", "--frontend", "dockerfile.v0", "--local", "context="+repo, "--local", "dockerfile="+dfDir,
					"--opt", "filename="+v+".Dockerfile", "--opt", "platform="+benchPlatform().Name, "--opt", "build-arg:WORKER_VERSION=bench", "--progress", "quiet",
					"--output", "type=image,name="+reg+"/worker-github_runner:dev-"+v+",push=true,registry.insecure=true")
				total += d
			}
			return total
		}},
	}
	cold, change := make([]stat, len(contenders)), make([]stat, len(contenders))
	for r := 0; r < *runs; r++ {
		for i := range contenders {
			idx := (i + r) % len(contenders) // alternate who goes first
			c := contenders[idx]
			reg := fmt.Sprintf("%s/bench-compile-%d-%d", env["WGR_REGISTRY"], idx, time.Now().UnixNano())
			repo := filepath.Join(work, fmt.Sprintf("repo-%d-%d", idx, r))
			copyRepo(repo)
			stampWorker(repo, fmt.Sprintf("a-%d", time.Now().UnixNano()))
			sh(nil, "sh", "-c", "cd "+repo+" && exec "+filepath.Join(work, "imagegen")+" render --no-lint")
			prune() // --all: cache mounts (Go's module and build caches) too
			cold[idx].add(c.run(repo, reg).Seconds())
			stampWorker(repo, fmt.Sprintf("b-%d", time.Now().UnixNano())) // only the worker changed
			change[idx].add(c.run(repo, reg).Seconds())
			logf("  run %d %-70s cold %.1fs worker-only %.2fs", r+1, c.name, cold[idx].values[r], change[idx].values[r])
		}
	}
	results.WriteString("## 2b. The worker: imagegen's named context against the Dockerfile compiling it\n\n")
	results.WriteString("Every rendered Dockerfile builds on its own from the repository root: a stage `FROM --platform=$BUILDPLATFORM golang:<GO_VERSION>` compiles `cmd/worker` (cache mounts for Go's module and build caches, the Go module proxy over the network). imagegen compiles the worker on the host and gives the binaries as the named context `worker`, which replaces that stage. Both rows build the whole matrix (gpu + cpu) and compile the worker within the measured time. Cold: `buildctl prune --all` first (cache mounts included), and imagegen's `go build` gets empty GOCACHE and GOMODCACHE folders of its own, so both download the worker's modules from the proxy and compile everything. Worker-only: one worker source file changed, nothing else. Seconds.\n\n")
	results.WriteString("| contender | cold | worker-only |\n|---|---|---|\n")
	for i, c := range contenders {
		fmt.Fprintf(&results, "| %s | %.1f (%s) | %.2f (%s) |\n", c.name, cold[i].median(), cold[i].spread(), change[i].median(), change[i].spread())
	}
	fmt.Fprintf(&results, "\nRatio (Dockerfile compile / imagegen): cold %.2f, worker-only %.2f.\n\n", cold[1].median()/cold[0].median(), change[1].median()/change[0].median())
	results.WriteString("Cold, the Dockerfile's own stage also pulls the Go image. Worker-only, both rebuild one layer per variant; imagegen's time is mostly its host `go build` plus resolving the matrix and the atomic tagging pass, and BuildKit's own part of it is the worker-only column of section 1-2 (a prebuilt binary).\n\n")
}

var kanikoRE = regexp.MustCompile(`kaniko cold ([0-9.]+)s \((\d+)/(\d+) steps cached\), warm with --cache-repo ([0-9.]+)s \((\d+)/(\d+) cached\)`)

func kanikoBench() {
	logf("kaniko: cold and warm (--cache-repo), against BuildKit on the cpu variant")
	var kc, kw, bc, bw stat
	for r := 0; r < max(*runs-1, 1); r++ {
		o, _ := sh([]string{"WGR_DEVENV=" + os.Getenv("WGR_DEVENV")}, "go", "test", "-count=1", "-v", "-run", "TestKanikoInsideTheImage", "-timeout", "40m", "./internal/e2e/")
		m := kanikoRE.FindStringSubmatch(o)
		if m == nil {
			fail("no kaniko timings in the e2e output:\n%s", tail(o, 20))
		}
		c, _ := strconv.ParseFloat(m[1], 64)
		w, _ := strconv.ParseFloat(m[4], 64)
		kc.add(c)
		kw.add(w)
		// BuildKit on the same variant: cold (no cache at all), and warm
		// from the registry cache only (local cache pruned), as Kaniko is.
		ctxDir := filepath.Join(work, fmt.Sprintf("kctx-%d", r))
		prepareContext(ctxDir, fmt.Sprintf("bench-k-%d", r))
		reg := fmt.Sprintf("%s/bench-k-%d-%d", env["WGR_REGISTRY"], r, time.Now().UnixNano())
		args := []string{"build", "cpu", "--push", "--progress", "quiet", "--worker-bin", workerBinFlag(ctxDir), "--output", filepath.Join(work, "out", "oci")}
		prune()
		_, d := sh([]string{"REGISTRY=" + reg}, filepath.Join(work, "imagegen"), append(args, "--cache-to", "{image}:cache-{variant}")...)
		bc.add(d.Seconds())
		prune()
		_, d = sh([]string{"REGISTRY=" + reg}, filepath.Join(work, "imagegen"), append(args, "--cache-from", "{image}:cache-{variant}")...)
		bw.add(d.Seconds())
		logf("  run %d kaniko cold %.1fs warm %.1fs, buildkit cold %.1fs warm %.1fs", r+1, c, w, bc.values[r], bw.values[r])
	}
	results.WriteString("## 3. Kaniko against BuildKit, the cpu variant\n\n")
	results.WriteString("Kaniko runs as `imagegen build --builder kaniko --push` inside a runc container of the CPU image (as on a RunPod runner, no Docker daemon): cold with an empty cache repository, then warm in a fresh container with `--cache-repo` (the cache is all it has). BuildKit: `imagegen build cpu --push` after `buildctl prune --all`, cold with `--cache-to`, then pruned again and warm with `--cache-from` the registry cache. Seconds, including the push.\n\n")
	results.WriteString("| builder | cold | warm (registry cache only) |\n|---|---|---|\n")
	fmt.Fprintf(&results, "| Kaniko v1.23.2 | %.2f (%s) | %.2f (%s) |\n| BuildKit v0.34.2 | %.2f (%s) | %.2f (%s) |\n\n", kc.median(), kc.spread(), kw.median(), kw.spread(), bc.median(), bc.spread(), bw.median(), bw.spread())
	fmt.Fprintf(&results, "Kaniko/BuildKit: cold %.2f, warm %.2f. Kaniko snapshots the whole file system after each step and extracts every cached layer again, where BuildKit only fetches what it lacks: use BuildKit wherever a daemon can run, and Kaniko where none can. BuildKit's warm build fetches nothing at all: every step is found in the registry cache and every layer is already in the target registry, so it writes only the manifest.\n\n", kc.median()/bc.median(), kw.median()/bw.median())
}

const seedDockerfile = `# The seed's design on the same base: its Python handler needs python3, pip and the
# runpod SDK's dependencies (PyPI is unreachable here, so the Debian packages of the SDK's
# main dependencies stand in for pip install runpod), plus the same runner and Kaniko.
FROM gcr.io/kaniko-project/executor:v1.23.2 AS kaniko
FROM ubuntu:24.04
ARG RUNNER_URL
ARG RUNNER_SHA256
ARG RUNNER_VERSION
RUN set -eu; export DEBIAN_FRONTEND=noninteractive; apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl git jq unzip zstd sudo \
      libicu72 libkrb5-3 liblttng-ust1 libssl3 zlib1g \
      python3 python3-pip python3-venv python3-requests python3-aiohttp python3-boto3 python3-tqdm python3-paramiko python3-cryptography; \
    rm -rf /var/lib/apt/lists/*
COPY --from=kaniko /kaniko/executor /kaniko/executor
RUN set -eu; curl -fsSL -o /tmp/r.tgz "${RUNNER_URL}/v${RUNNER_VERSION}/actions-runner-linux-x64-${RUNNER_VERSION}.tar.gz"; \
    echo "${RUNNER_SHA256}  /tmp/r.tgz" | sha256sum -c -; mkdir -p /actions-runner; tar -xzf /tmp/r.tgz -C /actions-runner; rm /tmp/r.tgz
COPY handler.py /handler.py
CMD ["python3", "-u", "/handler.py"]
`

func imageSizes(ref string) (compressed, uncompressed int64) {
	r, err := name.ParseReference(ref)
	if err != nil {
		fail("%v", err)
	}
	img, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: benchPlatform().OS, Architecture: benchPlatform().DockerArch}))
	if err != nil {
		fail("%s: %v", ref, err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		s, _ := l.Size()
		compressed += s
		rc, err := l.Uncompressed()
		if err != nil {
			fail("%v", err)
		}
		n, _ := io.Copy(io.Discard, rc)
		rc.Close()
		uncompressed += n
	}
	return
}

func sizeBench() {
	logf("image sizes: ours against the seed's design")
	reg := fmt.Sprintf("%s/bench-size-%d", env["WGR_REGISTRY"], time.Now().UnixNano())
	ctxDir := filepath.Join(work, "size-ctx")
	prepareContext(ctxDir, "bench-size")
	sh([]string{"REGISTRY=" + reg}, filepath.Join(work, "imagegen"), "build", "--push", "--progress", "quiet", "--worker-bin", workerBinFlag(ctxDir), "--output", filepath.Join(work, "out", "oci"))
	seedDir := filepath.Join(work, "seed")
	os.MkdirAll(seedDir, 0o755)
	os.WriteFile(filepath.Join(seedDir, "Dockerfile"), []byte(seedDockerfile), 0o644)
	handler, _ := os.ReadFile(filepath.Join(root, "bench", "seed", "handler.py"))
	os.WriteFile(filepath.Join(seedDir, "handler.py"), handler, 0o644)
	var sums map[string]string
	json.Unmarshal([]byte(env["RUNNER_SHA256"]), &sums)
	buildctl("build", "--frontend", "dockerfile.v0", "--local", "context="+seedDir, "--local", "dockerfile="+seedDir, "--progress", "quiet",
		"--opt", "build-arg:RUNNER_URL="+env["RUNNER_URL"], "--opt", "build-arg:RUNNER_SHA256="+sums[benchPlatform().Name],
		"--opt", "build-arg:RUNNER_VERSION="+runnerVersion(root),
		"--output", "type=image,name="+reg+"/seed:cpu,push=true,registry.insecure=true")
	baseC, baseU := imageSizes(env["WGR_REGISTRY"] + "/library/ubuntu:24.04")
	results.WriteString("## 4. Image size\n\nCompressed (as pushed) and uncompressed, MB (10^6 bytes); \"added\" is what the image adds to its base. The GPU image's base here is the same stand-in as the CPU image's, so the two differ only by labels and environment. The seed's design: `bench/seed/` (the seed's Python handler on the same base, with python3, pip and the SDK's dependencies from Debian's packages, since PyPI is unreachable here).\n\n| image | compressed | uncompressed | added compressed | added uncompressed |\n|---|---|---|---|---|\n")
	for _, x := range []struct{ name, ref string }{
		{"ours, cpu", reg + "/worker-github_runner:dev-cpu"},
		{"ours, gpu", reg + "/worker-github_runner:dev-gpu"},
		{"seed's design, cpu", reg + "/seed:cpu"},
	} {
		c, u := imageSizes(x.ref)
		fmt.Fprintf(&results, "| %s | %.1f | %.1f | %.1f | %.1f |\n", x.name, float64(c)/1e6, float64(u)/1e6, float64(c-baseC)/1e6, float64(u-baseU)/1e6)
	}
	fmt.Fprintf(&results, "| the base (stand-in) | %.1f | %.1f | | |\n\n", float64(baseC)/1e6, float64(baseU)/1e6)
}

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func workerBench() {
	logf("worker: start to first take, memory while a runner job is held")
	var start stat
	for i := 0; i < 20; i++ {
		p := runpodtest.New()
		cmd := exec.Command(filepath.Join(work, "worker"), "--echo")
		for k, v := range p.Env("pod-b") {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		t0 := time.Now()
		cmd.Start()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
			if ts, _ := p.Takes(); len(ts) > 0 {
				start.add(float64(ts[0].Sub(t0).Microseconds()) / 1000)
				break
			}
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		p.Close()
	}
	// Memory while a (fake) runner holds a 3-second job.
	fr := filepath.Join(work, "actions-runner")
	os.MkdirAll(filepath.Join(fr, "bin"), 0o755)
	sh([]string{"CGO_ENABLED=0"}, "go", "build", "-o", filepath.Join(fr, "bin", "Runner.Listener"), "./internal/listener/fakerunner")
	os.WriteFile(filepath.Join(fr, "fake-behaviour.json"), []byte(`{"mode":"job","job_seconds":3}`), 0o644)
	var rss stat
	for i := 0; i < *runs; i++ {
		p := runpodtest.New()
		gh := githubtest.New("ghp_bench")
		p.AddJob("bench", map[string]any{"github_org": "my-org", "github_api_url": gh.URL, "runner_user": "root"})
		cmd := exec.Command(filepath.Join(work, "worker"))
		for k, v := range p.Env("pod-r") {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Env = append(cmd.Env, "GITHUB_PAT=ghp_bench", "GITHUB_ORG=my-org", "GITHUB_API_URL="+gh.URL,
			"WGR_TEST_ALLOW_HTTP_LOOPBACK=1", "RUNNER_ALLOW_ROOT=1", "RUNNER_ROOT="+fr, "PATH="+os.Getenv("PATH"))
		cmd.Start()
		peak := 0
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		ticker := time.NewTicker(50 * time.Millisecond)
	loop:
		for {
			select {
			case <-done:
				break loop
			case <-ticker.C:
				peak = max(peak, rssKB(cmd.Process.Pid))
			}
		}
		ticker.Stop()
		if post, err := p.WaitFinal("bench", time.Second); err != nil || post.Body["output"] == nil {
			fail("worker memory run: the job did not complete: %v %v", err, post.Body)
		}
		rss.add(float64(peak) / 1024)
		p.Close()
		gh.Close()
	}
	var py stat
	for i := 0; i < 10; i++ {
		_, d, err := try(nil, "python3", "-c", "import json, urllib.request, asyncio, logging")
		if err == nil {
			py.add(float64(d.Microseconds()) / 1000)
		}
	}
	st, _ := os.Stat(filepath.Join(work, "worker"))
	results.WriteString("## 5. The worker\n\n")
	fmt.Fprintf(&results, "| measure | median | min-max | runs |\n|---|---|---|---|\n| process start to first job-take request (ms) | %.2f | %s | %d |\n| peak resident memory while a runner job is held (MB) | %.1f | %s | %d |\n| binary size, stripped (MB) | %.1f | | |\n",
		start.median(), start.spread(), len(start.values), rss.median(), rss.spread(), len(rss.values), float64(st.Size())/1e6)
	if len(py.values) > 0 {
		fmt.Fprintf(&results, "| for scale: `python3 -c 'import json, urllib.request, asyncio, logging'` (ms) | %.1f | %s | %d |\n", py.median(), py.spread(), len(py.values))
	}
	results.WriteString("\nAgainst the fake RunPod platform (`internal/runpod/runpodtest`), with the fake GitHub API and the fake runner for the memory run. The Python SDK itself cannot be installed here (PyPI is unreachable); RunPod's own material puts its import at 300-500 ms before the first take. The line above is only the interpreter and standard modules the seed's handler loads before the SDK.\n\n")
}

func scaleBench() {
	logf("scale: print and render of 10 to 10,000 combinations")
	src, _ := os.ReadFile(filepath.Join(root, "variants.hcl"))
	scratch := work
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		scratch, _ = os.MkdirTemp("/dev/shm", "wgr-bench-")
		removeScratch := func() { os.RemoveAll(scratch) }
		defer atCleanup(removeScratch)()
		defer removeScratch()
	}
	results.WriteString("## 6. Scale of `imagegen print` and `render`\n\nA copy of variants.hcl plus one matrix variant of N combinations (three axes); wall time and peak memory of the imagegen process (`/usr/bin/time`), render without the linter, writing to tmpfs (" + scratch + "): on this VM's disk the cost of creating a file varies tenfold between runs, which would measure the disk rather than imagegen.\n\n| combinations | print (s) | print peak MB | render (s) | render peak MB | render s per 1,000 |\n|---|---|---|---|---|---|\n")
	for _, n := range [][3]int{{10, 1, 1}, {10, 10, 1}, {10, 10, 10}, {100, 10, 10}} {
		total := n[0] * n[1] * n[2]
		axis := func(p string, k int) string {
			var v []string
			for i := 0; i < k; i++ {
				v = append(v, fmt.Sprintf("%q", fmt.Sprintf("%s%d", p, i)))
			}
			return "[" + strings.Join(v, ",") + "]"
		}
		f := filepath.Join(work, fmt.Sprintf("scale-%d.hcl", total))
		block := fmt.Sprintf("\nvariant \"m\" {\n  inherits = [\"common\"]\n  matrix = { a = %s, b = %s, c = %s }\n  name = \"m-${a}-${b}-${c}\"\n  flavour = \"cpu\"\n  base = \"ubuntu:24.04\"\n  tags = [\"${a}-${b}-${c}\"]\n}\n", axis("a", n[0]), axis("b", n[1]), axis("c", n[2]))
		os.WriteFile(f, append(append([]byte{}, src...), block...), 0o644)
		var pt, pm, rt, rm stat
		for r := 0; r < *runs; r++ {
			o, _ := sh(nil, "/usr/bin/time", "-f", "TIME %e %M", filepath.Join(work, "imagegen"), "-f", f, "print")
			t, m := parseTime(o)
			pt.add(t)
			pm.add(m)
			// tmpfs: the VM disk's per-file cost varies tenfold from run to
			// run, which would measure the disk, not imagegen.
			outDir := filepath.Join(scratch, fmt.Sprintf("render-%d-%d", total, r))
			o, _ = sh(nil, "/usr/bin/time", "-f", "TIME %e %M", filepath.Join(work, "imagegen"), "-f", f, "render", "--no-lint", "--out", outDir)
			t, m = parseTime(o)
			rt.add(t)
			rm.add(m)
			os.RemoveAll(outDir)
		}
		fmt.Fprintf(&results, "| %d | %.2f | %.0f | %.2f | %.0f | %.2f |\n", total+2, pt.median(), pm.median(), rt.median(), rm.median(), rt.median()/float64(total+2)*1000)
	}
	results.WriteString("\nGrowth is linear when the last column stays flat as N grows tenfold.\n")
}

func parseTime(o string) (float64, float64) {
	sc := bufio.NewScanner(strings.NewReader(o))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "TIME" {
			t, _ := strconv.ParseFloat(f[1], 64)
			m, _ := strconv.ParseFloat(f[2], 64)
			return t, m / 1024
		}
	}
	fail("no /usr/bin/time output in %s", tail(o, 5))
	return 0, 0
}
