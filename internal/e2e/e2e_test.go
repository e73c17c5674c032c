// Package e2e builds the real variants.hcl through a real buildkitd into a
// real registry (scripts/devenv up) and checks the result with an
// independent client (go-containerregistry). .ci/run sets WGR_DEVENV to
// the environment file scripts/devenv writes; without it the tests skip.
package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/build/workerbin"
)

var (
	envFile  = os.Getenv("WGR_DEVENV")
	devenv   map[string]string
	imagegen string
	repoRoot string
)

func TestMain(m *testing.M) {
	if envFile == "" {
		fmt.Println("e2e: WGR_DEVENV is not set; skipping (run scripts/devenv up, then WGR_DEVENV=$(scripts/devenv path))")
		os.Exit(m.Run())
	}
	var err error
	devenv, err = readEnvFile(envFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	repoRoot, _ = filepath.Abs("../..")
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		panic(err)
	}
	imagegen = filepath.Join(dir, "imagegen")
	if out, err := exec.Command("go", "build", "-o", imagegen, "../../cmd/imagegen").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build imagegen: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needDevenv(t *testing.T) {
	t.Helper()
	if envFile == "" {
		t.Skip("needs the local build environment: scripts/devenv up, then set WGR_DEVENV (as .ci/run does)")
	}
}

// readEnvFile parses the `export K='V'` lines scripts/devenv writes.
func readEnvFile(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "export ") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if ok {
			out[k] = strings.Trim(v, "'")
		}
	}
	return out, sc.Err()
}

type runResult struct {
	code     int
	stdout   string
	stderr   string
	duration time.Duration
	meta     map[string]variantMeta
}

type variantMeta struct {
	Digest      string   `json:"digest"`
	Image       string   `json:"image"`
	Tags        []string `json:"tags"`
	Platforms   []string `json:"platforms"`
	Seconds     float64  `json:"seconds"`
	Steps       int      `json:"steps"`
	CachedSteps int      `json:"cached_steps"`
}

// build runs imagegen build --push on the real variants.hcl with the
// devenv overrides plus extra environment, in a bounded time.
func build(t *testing.T, timeout time.Duration, extraEnv []string, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	metaFile := filepath.Join(t.TempDir(), "meta.json")
	full := append([]string{"-f", filepath.Join(repoRoot, "variants.hcl"), "build", "--push", "--progress", "plain",
		"--output", filepath.Join(devenv["WGR_CACHE"], "out", "e2e"), "--metadata-file", metaFile}, args...)
	cmd := exec.CommandContext(ctx, imagegen, full...)
	cmd.Dir = repoRoot
	cmd.Env = os.Environ()
	for k, v := range devenv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	r := runResult{stdout: o.String(), stderr: e.String(), duration: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("imagegen build did not finish within %v:\n%s\n%s", timeout, r.stdout, tail(r.stderr, 40))
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(metaFile); err == nil {
		var m struct {
			Variants map[string]variantMeta `json:"variants"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		r.meta = m.Variants
	}
	return r
}

func head(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func uniqueRegistry(t *testing.T) string {
	return fmt.Sprintf("%s/e2e-%s-%d", devenv["WGR_REGISTRY"], strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}

func resolve(t *testing.T, ref string) (string, error) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r)
	if err != nil {
		return "", err
	}
	return d.Digest.String(), nil
}

func image(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// files lists the regular files of a layer, reading the content of wanted ones.
func layerFiles(t *testing.T, l v1.Layer, want map[string]bool) (map[string]bool, map[string][]byte) {
	t.Helper()
	r, wait, err := uncompressed(l) // gzip(1): Go's inflate is slow under -race
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	names, data := map[string]bool{}, map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		names[n] = true
		if want[n] {
			b, _ := io.ReadAll(tr)
			data[n] = b
		}
	}
	return names, data
}

func TestRealMatrixBuildsAndPublishes(t *testing.T) {
	needDevenv(t)
	reg := uniqueRegistry(t)
	env := []string{"REGISTRY=" + reg, "RELEASE=v1.0.0", "LATEST=true"}
	// Versions never built before, so the worker layer is new to BuildKit.
	ver1, ver2 := fmt.Sprintf("e2e-%d-a", time.Now().UnixNano()), fmt.Sprintf("e2e-%d-b", time.Now().UnixNano())

	cold := build(t, 20*time.Minute, env, "--worker-version", ver1)
	if cold.code != 0 {
		t.Fatalf("build failed (%d):\n%s\n%s", cold.code, cold.stdout, tail(cold.stderr, 60))
	}
	t.Logf("cold matrix build: %.1fs\n%s", cold.duration.Seconds(), cold.stdout)

	repo := reg + "/worker-github_runner"
	for variant, want := range map[string]struct{ tags []string }{
		"gpu": {[]string{"v1.0.0-gpu", "latest-gpu"}},
		"cpu": {[]string{"v1.0.0-cpu", "latest-cpu"}},
	} {
		meta, ok := cold.meta[variant]
		if !ok {
			t.Fatalf("metadata lacks %s: %v", variant, cold.meta)
		}
		for _, tag := range want.tags {
			d, err := resolve(t, repo+":"+tag)
			if err != nil {
				t.Fatalf("%s:%s: %v", repo, tag, err)
			}
			if d != meta.Digest {
				t.Errorf("%s:%s -> %s, metadata says %s", repo, tag, d, meta.Digest)
			}
		}
		img := image(t, repo+":"+want.tags[0])
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if ep := cf.Config.Entrypoint; len(ep) != 1 || ep[0] != "/usr/local/bin/worker" {
			t.Errorf("%s entrypoint = %v", variant, ep)
		}
		labels := cf.Config.Labels
		if labels["io.runpod.worker-github-runner.runner-version"] != runnerVersion(t) ||
			labels["io.runpod.worker-github-runner.kaniko-version"] != "v1.23.2" ||
			labels["org.opencontainers.image.version"] != "v1.0.0" {
			t.Errorf("%s labels = %v", variant, labels)
		}
		if variant == "gpu" && labels["io.runpod.worker-github-runner.cuda-version"] != "12.6.3" {
			t.Errorf("gpu has no CUDA label: %v", labels)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		// The last layer holds exactly the worker, a static ELF for amd64.
		last, data := layerFiles(t, layers[len(layers)-1], map[string]bool{"usr/local/bin/worker": true})
		bin, ok := data["usr/local/bin/worker"]
		if !ok {
			t.Fatalf("%s: last layer has %v, not usr/local/bin/worker", variant, last)
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: worker is not ELF: %v", variant, err)
		}
		if err := workerbin.CheckELF(f, "usr/local/bin/worker", "linux/amd64"); err != nil {
			t.Errorf("%s: %v", variant, err)
		}
		all := map[string]bool{}
		for _, l := range layers {
			names, _ := layerFiles(t, l, nil)
			for n := range names {
				all[n] = true
			}
		}
		for _, p := range []string{"actions-runner/run.sh", "actions-runner/config.sh", "kaniko/executor", "usr/local/bin/worker"} {
			if !all[p] {
				t.Errorf("%s: image lacks /%s", variant, p)
			}
		}
		for p := range all {
			if strings.HasPrefix(p, "var/lib/apt/lists/") && !strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "lock") && p != "var/lib/apt/lists/partial" {
				t.Errorf("%s: apt lists left in the image: %s", variant, p)
				break
			}
		}
	}

	checkScalerImage(t, repo, cold.meta["scaler"], []string{"v1.0.0-scaler", "latest-scaler"}, ver1)

	// Nothing changed: everything cached, the whole matrix in under 3 s.
	warm := build(t, 5*time.Minute, env, "--worker-version", ver1)
	if warm.code != 0 {
		t.Fatalf("warm build failed:\n%s", tail(warm.stderr, 40))
	}
	t.Logf("no-change rebuild: %.2fs", warm.duration.Seconds())
	if warm.duration > 3*time.Second {
		t.Errorf("no-change rebuild took %v, want < 3s", warm.duration)
	}
	for v, m := range warm.meta {
		if m.CachedSteps != m.Steps || m.Steps == 0 {
			t.Errorf("%s: %d of %d steps cached on a no-change rebuild", v, m.CachedSteps, m.Steps)
		}
		// A release carries attestations: the index is new each time (the
		// provenance records when it was built), the image it describes
		// must not be.
		if m.Digest == cold.meta[v].Digest {
			t.Errorf("%s: the index digest stayed %s: no fresh attestation on a rebuild", v, m.Digest)
		}
	}
	for _, v := range []string{"gpu", "cpu", "scaler"} {
		if a, b := platformDigest(t, cold.meta[v].Image+"@"+cold.meta[v].Digest), platformDigest(t, repo+":v1.0.0-"+v); a != b {
			t.Errorf("%s: image manifest changed on a no-change rebuild: %s -> %s", v, a, b)
		}
	}
	checkAttestations(t, repo+":v1.0.0-cpu", "cpu")
	checkAttestations(t, repo+":v1.0.0-scaler", "scaler")

	// Only the worker (and the scaler, stamped with the same version)
	// changed: only the last layer is rebuilt.
	before := map[string][]v1.Layer{}
	for _, v := range []string{"gpu", "cpu", "scaler"} {
		before[v], _ = image(t, repo+":v1.0.0-"+v).Layers()
	}
	wchange := build(t, 5*time.Minute, env, "--worker-version", ver2)
	if wchange.code != 0 {
		t.Fatalf("worker-only rebuild failed:\n%s", tail(wchange.stderr, 40))
	}
	t.Logf("worker-only rebuild: %.2fs", wchange.duration.Seconds())
	for _, v := range []string{"gpu", "cpu", "scaler"} {
		m := wchange.meta[v]
		if m.CachedSteps != m.Steps-1 {
			t.Errorf("%s: %d of %d steps cached after a worker-only change, want all but one", v, m.CachedSteps, m.Steps)
		}
		after, _ := image(t, repo+":v1.0.0-"+v).Layers()
		if len(after) != len(before[v]) {
			t.Fatalf("%s: layer count changed", v)
		}
		for i := range after {
			a, _ := after[i].Digest()
			b, _ := before[v][i].Digest()
			if (a != b) != (i == len(after)-1) {
				t.Errorf("%s: layer %d changed=%v (only the last may change)", v, i, a != b)
			}
		}
	}
}

func TestFailedVariantMovesNoTag(t *testing.T) {
	needDevenv(t)
	reg := uniqueRegistry(t)
	repo := reg + "/worker-github_runner"

	// A wrong runner checksum: both variants fail, both are named with the cause.
	bad := build(t, 10*time.Minute, []string{"REGISTRY=" + reg, "RUNNER_SHA256={\"linux/amd64\":\"" + strings.Repeat("0", 64) + "\"}"})
	if bad.code == 0 {
		t.Fatal("a build with a wrong runner checksum succeeded")
	}
	for _, want := range []string{"variant cpu:", "variant gpu:", "runner checksum mismatch", "no tag was written"} {
		if !strings.Contains(bad.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, tail(bad.stderr, 30))
		}
	}

	// gpu fails (a package that does not exist), cpu builds: still no tag.
	one := build(t, 10*time.Minute, []string{"REGISTRY=" + reg, "RELEASE=v9.9.9"}, "--set", "gpu.packages+=no-such-package-wgr")
	if one.code == 0 {
		t.Fatal("a build with a failing variant succeeded")
	}
	if !strings.Contains(one.stderr, "variant gpu:") || strings.Contains(one.stderr, "variant cpu:") {
		t.Errorf("want only gpu named as failed:\n%s", tail(one.stderr, 30))
	}
	if !strings.Contains(one.stdout, "cpu") || !strings.Contains(one.stdout, "FAILED") {
		t.Errorf("summary should show cpu built and gpu FAILED:\n%s", one.stdout)
	}
	for _, tag := range []string{"v9.9.9-cpu", "latest-cpu", "v9.9.9-gpu", "latest-gpu", "dev-cpu", "dev-gpu", "v9.9.9-scaler", "dev-scaler"} {
		if d, err := resolve(t, repo+":"+tag); err == nil {
			t.Errorf("tag %s exists (%s) after a failed matrix", tag, d)
		}
	}
}

func TestRegistryGoingAwayMidPush(t *testing.T) {
	needDevenv(t)
	p := startCuttingProxy(t, devenv["WGR_REGISTRY"], 256<<10)
	reg := p.addr + "/e2e-cut"
	// A fresh worker version so the last layer must be uploaded.
	r := build(t, 5*time.Minute, []string{"REGISTRY=" + reg}, "--worker-version", fmt.Sprintf("cut-%d", time.Now().UnixNano()), "cpu")
	if r.code == 0 {
		t.Fatalf("push through a registry that went away succeeded:\n%s", r.stdout)
	}
	if !p.cut() {
		t.Fatal("the proxy never cut the connection: the test did not test anything")
	}
	if !strings.Contains(r.stderr, "variant cpu:") {
		t.Errorf("error does not name the variant:\n%s", tail(r.stderr, 20))
	}
	t.Logf("failed in %.1fs with: %s", r.duration.Seconds(), lastLine(r.stderr, "variant cpu:"))
}

func lastLine(s, substr string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// stepsVariant adds, on top of cpu, an apt package and a file written by a
// Dockerfile heredoc with the variant's own value (${flavour}).
const stepsVariant = `variant "cpu-tools" {
  inherits = ["cpu"]
  tags     = ["dev-cpu-tools"]
  steps = [
    <<-EOT
    RUN set -eu; export DEBIAN_FRONTEND=noninteractive; apt-get update; \
        apt-get install -y --no-install-recommends tree; rm -rf /var/lib/apt/lists/*
    RUN <<EOF
    echo "built for ${flavour} by steps" > /opt/steps-marker
    EOF
    EOT
  ]
}

variant "cpu-tools-more" {
  inherits = ["cpu"]
  base     = variant.cpu-tools
  tags     = ["dev-cpu-tools-more"]
  steps    = ["RUN cp /opt/steps-marker /opt/more-marker && tree /opt > /opt/tree.txt"]
}
`

// A variant with steps, and a variant built on it (base = variant.NAME),
// build through the local buildkitd and registry: the images have what the
// steps installed (the second the first's files too), the worker is still
// the last layer, and a worker-only change rebuilds only that layer of
// each (issue 19).
func TestStepsVariantBuilds(t *testing.T) {
	needDevenv(t)
	reg := uniqueRegistry(t)
	extra := filepath.Join(t.TempDir(), "tools.hcl")
	if err := os.WriteFile(extra, []byte(stepsVariant), 0o644); err != nil {
		t.Fatal(err)
	}
	ver1, ver2 := fmt.Sprintf("e2e-%d-a", time.Now().UnixNano()), fmt.Sprintf("e2e-%d-b", time.Now().UnixNano())
	env := []string{"REGISTRY=" + reg}
	cold := build(t, 15*time.Minute, env, "-f", extra, "--worker-version", ver1, "cpu-tools*")
	if cold.code != 0 {
		t.Fatalf("build failed (%d):\n%s\n%s", cold.code, cold.stdout, tail(cold.stderr, 60))
	}
	t.Logf("cold build of cpu-tools and cpu-tools-more: %.1fs", cold.duration.Seconds())
	checkStepsImage(t, reg+"/worker-github_runner:dev-cpu-tools", []string{"usr/bin/tree", "opt/steps-marker"})
	checkStepsImage(t, reg+"/worker-github_runner:dev-cpu-tools-more", []string{"usr/bin/tree", "opt/steps-marker", "opt/more-marker", "opt/tree.txt"})
	wchange := build(t, 5*time.Minute, env, "-f", extra, "--worker-version", ver2, "cpu-tools*")
	if wchange.code != 0 {
		t.Fatalf("rebuild failed (%d):\n%s", wchange.code, tail(wchange.stderr, 40))
	}
	for _, v := range []string{"cpu-tools", "cpu-tools-more"} {
		m := wchange.meta[v]
		t.Logf("%s, worker-only change: %.1fs, %d of %d steps cached", v, wchange.duration.Seconds(), m.CachedSteps, m.Steps)
		if m.Steps == 0 || m.CachedSteps != m.Steps-1 {
			t.Errorf("%s: %d of %d steps cached after a worker-only change, want all but one", v, m.CachedSteps, m.Steps)
		}
	}
}

// checkStepsImage checks an image has the files, the runner, the marker
// the steps wrote, and the worker alone in its last layer.
func checkStepsImage(t *testing.T, ref string, want []string) {
	t.Helper()
	layers, err := image(t, ref).Layers()
	if err != nil {
		t.Fatal(err)
	}
	all, data := map[string]bool{}, map[string][]byte{}
	for _, l := range layers {
		names, d := layerFiles(t, l, map[string]bool{"opt/steps-marker": true})
		for n := range names {
			all[n] = true
		}
		for k, v := range d {
			data[k] = v
		}
	}
	for _, p := range append(want, "actions-runner/run.sh", "usr/local/bin/worker") {
		if !all[p] {
			t.Errorf("%s lacks /%s", ref, p)
		}
	}
	if got := string(data["opt/steps-marker"]); got != "built for cpu by steps\n" {
		t.Errorf("%s: /opt/steps-marker = %q", ref, got)
	}
	last, _ := layerFiles(t, layers[len(layers)-1], nil)
	for n := range last {
		if !strings.HasPrefix("usr/local/bin/worker", strings.TrimSuffix(n, "/")) {
			t.Errorf("%s: the last layer holds %s besides the worker", ref, n)
		}
	}
	if !last["usr/local/bin/worker"] {
		t.Errorf("%s: the last layer is not the worker's: %v", ref, last)
	}
}
