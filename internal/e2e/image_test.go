package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/build/workerbin"
	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/platform"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

const testPAT = "ghp_E2EPAT0123456789abcdefghijklmnopqrstu"

// runnerVersion is the runner release variants.hcl ships, so a runner bump
// needs no edit here.
func runnerVersion(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../../variants.hcl")
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := variants.RunnerDefaults("variants.hcl", src)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func needRunc(t *testing.T) {
	t.Helper()
	needDevenv(t)
	if !hasRunc() {
		t.Skip("needs runc and root to run the image")
	}
}

// cpuImage builds the CPU variant (cached when nothing changed) into its
// own namespace and returns its reference.
func cpuImage(t *testing.T) (string, v1.Image) {
	t.Helper()
	reg := uniqueRegistry(t)
	r := build(t, 15*time.Minute, []string{"REGISTRY=" + reg}, "cpu")
	if r.code != 0 {
		t.Fatalf("build: %s\n%s", r.stdout, tail(r.stderr, 40))
	}
	ref := reg + "/worker-github_runner:dev-cpu"
	return ref, image(t, ref)
}

// The CPU image, run with runc like RunPod runs it, takes a job from the
// fake platform, registers the fake runner with the fake GitHub, runs one
// job as the unprivileged user, leaves no runner, posts COMPLETED, exits 0.
func TestImageRunsAsWorker(t *testing.T) {
	needRunc(t)
	_, img := cpuImage(t)
	runsAsWorker(t, img, newBundle(t, img), "cpu")
}

// runsAsWorker runs an image, unpacked in rootfs, with runc like RunPod
// runs it and checks the job ran through the fake platform and GitHub
// (TestImageRunsAsWorker).
func runsAsWorker(t *testing.T, img v1.Image, rootfs, flavour string) {
	t.Helper()
	p := runpodtest.New()
	defer p.Close()
	gh := githubtest.New(testPAT)
	defer gh.Close()

	cf, _ := img.ConfigFile()
	env := append([]string{}, cf.Config.Env...)
	for k, v := range p.Env("pod-e2e") {
		env = append(env, k+"="+v)
	}
	// The PAT is the endpoint's: it may go only to the endpoint's own API URL and organisation.
	env = append(env, "GITHUB_PAT="+testPAT, "GITHUB_ORG=my-org", "GITHUB_API_URL="+gh.URL, "WGR_TEST_ALLOW_HTTP_LOOPBACK=1")
	p.AddJob("image-job", map[string]any{"github_org": "my-org", "github_api_url": gh.URL, "labels": "e2e-pin", "idle_timeout": 60})

	start := time.Now()
	out, code := container{rootfs: rootfs, args: append(cf.Config.Entrypoint, cf.Config.Cmd...), env: env, caps: dockerCaps}.run(t, 3*time.Minute)
	t.Logf("worker in the image: exit %d after %.1fs", code, time.Since(start).Seconds())
	if code != 0 {
		t.Fatalf("worker exited %d:\n%s", code, tail(out, 40))
	}
	post, err := p.WaitFinal("image-job", time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(out, 40))
	}
	res, _ := post.Body["output"].(map[string]any)
	if res["job_ran"] != true || res["job_result"] != "Succeeded" || res["runner_removed"] != "by GitHub" || post.Body["stopPod"] != true {
		t.Fatalf("result %v\n%s", post.Body, tail(out, 40))
	}
	labels := fmt.Sprint(res["labels"])
	arch, _ := platform.ByGOARCH(cf.Architecture) // x64 or arm64
	for _, want := range []string{"self-hosted", "linux", arch.RunnerArch, "runpod", flavour, "e2e-pin"} {
		if !strings.Contains(labels, want) {
			t.Errorf("labels %s lack %s", labels, want)
		}
	}
	if rs := gh.Runners(); len(rs) != 0 {
		t.Errorf("runners left: %+v", rs)
	}
	for _, s := range append([]string{testPAT, p.APIKey}, gh.Issued()...) {
		if strings.Contains(out, s) {
			t.Errorf("a secret (%.10s...) is in the container's output", s)
		}
	}
	if !strings.Contains(out, "Running job: test-job") {
		t.Errorf("the runner's output is not in the worker's log:\n%s", tail(out, 20))
	}
}

// imagegen --builder kaniko, inside a runc container of the CPU image
// (which carries /kaniko/executor), builds the CPU variant and pushes it to
// the local registry; the result matches the BuildKit image.
func TestKanikoInsideTheImage(t *testing.T) {
	needRunc(t)
	bkRef, bkImg := cpuImage(t)

	src := t.TempDir()
	os.Chmod(src, 0o755)
	for bin, pkg := range map[string]string{"imagegen": "../../cmd/imagegen", "worker": "../../cmd/worker"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(src, bin), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", bin, err, out)
		}
	}
	hcl, _ := os.ReadFile(filepath.Join(repoRoot, "variants.hcl"))
	os.WriteFile(filepath.Join(src, "variants.hcl"), hcl, 0o644)

	kreg := uniqueRegistry(t)
	kaniko := func(name string) (runResult, string) {
		out := filepath.Join(t.TempDir(), "out")
		os.MkdirAll(out, 0o755)
		rootfs := newBundle(t, bkImg)
		cf, _ := bkImg.ConfigFile()
		env := append([]string{}, cf.Config.Env...)
		for _, k := range []string{"RUNNER_URL", "RUNNER_SHA256", "RUNNER_PACKAGES"} {
			env = append(env, k+"="+devenv[k])
		}
		env = append(env, "REGISTRY="+kreg, "HOME=/root")
		args := []string{"/src/imagegen", "-f", "/src/variants.hcl", "build", "--builder", "kaniko", "--push",
			"--worker-bin", "linux/amd64=/src/worker", "--output", "/out/oci", "--metadata-file", "/out/meta.json", "--kaniko-dir", "/tmp/imagegen-kaniko",
			"--cache-to", "{image}-cache",
			"--kaniko-arg=--registry-map=index.docker.io=" + devenv["WGR_REGISTRY"],
			"--kaniko-arg=--registry-map=gcr.io=" + devenv["WGR_REGISTRY"],
			"cpu"}
		c := container{rootfs: rootfs, args: args, env: env, caps: kanikoCaps}
		// /src and /out are bind mounts: Kaniko leaves mount points alone.
		start := time.Now()
		output, code := c.runWithMounts(t, 20*time.Minute, map[string]string{"/src": src, "/out": out})
		r := runResult{code: code, stdout: output, duration: time.Since(start)}
		if b, err := os.ReadFile(filepath.Join(out, "meta.json")); err == nil {
			var m struct {
				Variants map[string]variantMeta `json:"variants"`
			}
			json.Unmarshal(b, &m)
			r.meta = m.Variants
		}
		t.Logf("kaniko %s build: %.1fs, exit %d", name, r.duration.Seconds(), code)
		return r, output
	}

	cold, out := kaniko("cold")
	if cold.code != 0 {
		t.Fatalf("kaniko build failed:\n%s\n...\n%s", head(out, 15), tail(out, 40))
	}
	warm, out := kaniko("warm")
	if warm.code != 0 {
		t.Fatalf("warm kaniko build failed:\n%s\n...\n%s", head(out, 15), tail(out, 40))
	}
	t.Logf("kaniko cold %.1fs (%d/%d steps cached), warm with --cache-repo %.1fs (%d/%d cached)",
		cold.duration.Seconds(), cold.meta["cpu"].CachedSteps, cold.meta["cpu"].Steps,
		warm.duration.Seconds(), warm.meta["cpu"].CachedSteps, warm.meta["cpu"].Steps)
	if warm.meta["cpu"].CachedSteps == 0 {
		t.Errorf("the warm build used no cache: %+v", warm.meta["cpu"])
	}

	kRef := kreg + "/worker-github_runner:dev-cpu"
	d, err := resolve(t, kRef)
	if err != nil || d != warm.meta["cpu"].Digest {
		t.Fatalf("%s -> %s (%v), metadata %s", kRef, d, err, warm.meta["cpu"].Digest)
	}
	kImg := image(t, kRef)
	compareImages(t, bkRef, bkImg, kRef, kImg)
}

// compareImages checks that two builds of the same variant agree on what
// matters: the runner, Kaniko and worker files, entrypoint, labels, env.
func compareImages(t *testing.T, aRef string, a v1.Image, bRef string, b v1.Image) {
	t.Helper()
	ac, _ := a.ConfigFile()
	bc, _ := b.ConfigFile()
	if !reflect.DeepEqual(ac.Config.Entrypoint, bc.Config.Entrypoint) {
		t.Errorf("entrypoint: %v vs %v", ac.Config.Entrypoint, bc.Config.Entrypoint)
	}
	if !reflect.DeepEqual(ac.Config.Labels, bc.Config.Labels) {
		t.Errorf("labels differ:\n%v\n%v", ac.Config.Labels, bc.Config.Labels)
	}
	ae, be := append([]string{}, ac.Config.Env...), append([]string{}, bc.Config.Env...)
	sort.Strings(ae)
	sort.Strings(be)
	if !reflect.DeepEqual(ae, be) {
		t.Errorf("env differs:\n%v\n%v", ae, be)
	}
	files := func(img v1.Image) map[string]bool {
		out := map[string]bool{}
		layers, _ := img.Layers()
		for _, l := range layers {
			names, _ := layerFiles(t, l, nil)
			for n := range names {
				n = strings.TrimSuffix(n, "/")
				if strings.HasPrefix(n, "actions-runner") || strings.HasPrefix(n, "kaniko/executor") || n == "usr/local/bin/worker" {
					out[n] = true
				}
			}
		}
		return out
	}
	af, bf := files(a), files(b)
	if len(af) < 5 {
		t.Fatalf("%s has only %v", aRef, af)
	}
	for n := range af {
		if !bf[n] {
			t.Errorf("%s has /%s, %s does not", aRef, n, bRef)
		}
	}
	for n := range bf {
		if !af[n] {
			t.Errorf("%s has /%s, %s does not", bRef, n, aRef)
		}
	}
}

// renderForDevenv renders the Dockerfiles (the root one and dockerfiles/)
// with the devenv's overrides into a folder of their own: the committed
// ones download the runner from github.com and install Ubuntu 24.04's
// package names, which this offline machine and its Debian stand-ins lack.
// Only the values differ; the build below involves no imagegen.
func renderForDevenv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(imagegen, "-f", filepath.Join(repoRoot, "variants.hcl"), "render", "--no-lint", "--out", filepath.Join(dir, "dockerfiles"))
	cmd.Env = os.Environ()
	for k, v := range devenv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	return dir
}

// buildctlImage builds dfDir/file with the repository root as the build
// context through the buildctl CLI alone, as a user without imagegen
// would, pushes it, and returns its reference and image.
func buildctlImage(t *testing.T, dfDir, file string, opts ...string) (string, v1.Image) {
	t.Helper()
	ref := uniqueRegistry(t) + "/worker-github_runner:" + strings.TrimSuffix(file, ".Dockerfile")
	args := []string{"--addr", devenv["BUILDKIT_HOST"], "build", "--frontend", "dockerfile.v0",
		"--local", "context=" + repoRoot, "--local", "dockerfile=" + dfDir, "--opt", "filename=" + file,
		"--output", "type=image,name=" + ref + ",push=true,registry.insecure=true", "--progress", "plain"}
	for _, o := range opts {
		args = append(args, "--opt", o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, filepath.Join(devenv["WGR_CACHE"], "bin", "buildctl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("buildctl build -f %s %v: %v\n%s", file, opts, err, tail(string(out), 40))
	}
	t.Logf("buildctl build -f %s %v: %.1fs", file, opts, time.Since(start).Seconds())
	return ref, image(t, ref)
}

// checkImageContract checks what every image promises, on its config and
// the files its build added (read from the top layers down, never the base
// image's): the entrypoint, the variant's labels, the runner (its checksum
// was verified by the build) owned by the unprivileged runner user (uid
// 1001), a static worker, and the seed's kaniko command beside
// /kaniko/executor with /kaniko/.docker owned by that user.
func checkImageContract(t *testing.T, img v1.Image, variant string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if ep := cf.Config.Entrypoint; len(ep) != 1 || ep[0] != "/usr/local/bin/worker" {
		t.Errorf("%s: entrypoint %v", variant, ep)
	}
	l := cf.Config.Labels
	if l["io.runpod.worker-github-runner.variant"] != variant || l["io.runpod.worker-github-runner.flavour"] != variant ||
		l["io.runpod.worker-github-runner.runner-version"] != runnerVersion(t) || l["io.runpod.worker-github-runner.kaniko-version"] != "v1.23.2" {
		t.Errorf("%s: labels %v", variant, l)
	}
	hdrs, data := topFiles(t, img, []string{"actions-runner/config.sh", "actions-runner/run.sh", "actions-runner/_work",
		"kaniko/.docker", "kaniko/executor", "etc/passwd", "usr/local/bin/kaniko", "usr/local/bin/worker"})
	for _, p := range []string{"actions-runner/config.sh", "actions-runner/run.sh", "actions-runner/_work", "kaniko/.docker"} {
		if h := hdrs[p]; h == nil || h.Uid != 1001 {
			t.Errorf("%s: /%s is %+v, want it owned by uid 1001 (runner)", variant, p, h)
		}
	}
	if h := hdrs["kaniko/.docker"]; h != nil && h.Mode&0o777 != 0o700 {
		t.Errorf("%s: /kaniko/.docker has mode %o, want 0700", variant, h.Mode&0o777)
	}
	for _, p := range []string{"kaniko/executor", "usr/local/bin/kaniko", "usr/local/bin/worker"} {
		if h := hdrs[p]; h == nil || h.Mode&0o111 == 0 {
			t.Errorf("%s: /%s is not an executable: %+v", variant, p, h)
		}
	}
	if !strings.Contains(string(data["etc/passwd"]), "\nrunner:x:1001:") {
		t.Errorf("%s: no runner user (uid 1001) in /etc/passwd", variant)
	}
	if k := string(data["usr/local/bin/kaniko"]); !strings.Contains(k, "exec /kaniko/executor") {
		t.Errorf("%s: /usr/local/bin/kaniko is %q", variant, k)
	}
	f, err := elf.NewFile(bytes.NewReader(data["usr/local/bin/worker"]))
	if err != nil {
		t.Fatalf("%s: worker is not ELF: %v", variant, err)
	}
	if err := workerbin.CheckELF(f, "usr/local/bin/worker", "linux/amd64"); err != nil {
		t.Errorf("%s: %v", variant, err)
	}
}

// topFiles reads the layers from the newest down until every path was
// seen, giving each path's newest header and content.
func topFiles(t *testing.T, img v1.Image, paths []string) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	for i := len(layers) - 1; i >= 0 && len(hdrs) < len(paths); i-- {
		r, wait, err := uncompressed(layers[i])
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
			if _, seen := hdrs[n]; seen || !slices.Contains(paths, n) {
				continue
			}
			hdrs[n] = h
			data[n], _ = io.ReadAll(tr)
		}
		wait()
	}
	return hdrs, data
}

// The seed's quick start with nothing but BuildKit: the root Dockerfile
// (BUILD_TYPE=cpu) and dockerfiles/gpu.Dockerfile build through buildctl
// from the repository root, compiling the worker in their own stage with
// the Go stand-in and the Go module proxy, and the images keep the same
// promises as imagegen's: contract, and (CPU) a job run with runc; the
// scaler's compiles cmd/scaler the same way and keeps the scaler's. Then, in the
// CPU image (last: Kaniko replaces its file system), the seed's two Kaniko
// snippets run verbatim: registry credentials written to
// /kaniko/.docker/config.json, then `kaniko --dockerfile=./Dockerfile
// --context=. --destination=... --cache=true --cache-repo=...`, which
// pushes an image and its cache to the local registry.
func TestDockerfilesBuildWithBuildctlAlone(t *testing.T) {
	needRunc(t)
	dir := renderForDevenv(t)
	for _, c := range []struct {
		variant, dfDir, file string
		opts                 []string
	}{
		{"scaler", filepath.Join(dir, "dockerfiles"), "scaler.Dockerfile", nil},
		{"gpu", filepath.Join(dir, "dockerfiles"), "gpu.Dockerfile", nil},
		{"cpu", dir, "Dockerfile", []string{"build-arg:BUILD_TYPE=cpu"}},
	} {
		_, img := buildctlImage(t, c.dfDir, c.file, c.opts...)
		if c.variant == "scaler" {
			checkScalerContract(t, img, "dev") // its own stage compiled cmd/scaler
			continue
		}
		checkImageContract(t, img, c.variant)
		if c.variant != "cpu" {
			continue // the GPU worker refuses a host without a GPU
		}
		start := time.Now()
		rootfs := newBundle(t, img)
		t.Logf("%s: unpacked in %.1fs", c.variant, time.Since(start).Seconds())
		runsAsWorker(t, img, rootfs, c.variant)
		seedKanikoSnippets(t, img, rootfs)
	}
}

func seedKanikoSnippets(t *testing.T, img v1.Image, rootfs string) {
	t.Helper()
	work := t.TempDir()
	os.Chmod(work, 0o755)
	reg := devenv["WGR_REGISTRY"]
	df := "FROM " + reg + "/library/ubuntu:24.04\nRUN echo built-by-kaniko > /hello\n"
	if err := os.WriteFile(filepath.Join(work, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := uniqueRegistry(t) + "/app"
	script := `set -eu
echo "{\"auths\":{\"$REGISTRY\":{\"auth\":\"$(echo -n "$REGISTRY_USERNAME:$REGISTRY_PASSWORD" | base64)\"}}}" > /kaniko/.docker/config.json
kaniko --dockerfile=./Dockerfile --context=. --destination=$IMAGE:latest --cache=true --cache-repo=$IMAGE-cache
`
	env := append(imageEnv(t, img), "REGISTRY="+reg, "REGISTRY_USERNAME=e2e", "REGISTRY_PASSWORD=e2e-password", "IMAGE="+repo, "HOME=/root")
	c := container{rootfs: rootfs, args: []string{"/bin/sh", "-c", script}, env: env, caps: kanikoCaps, cwd: "/work"}
	start := time.Now()
	out, code := c.runWithMounts(t, 10*time.Minute, map[string]string{"/work": work})
	t.Logf("the seed's kaniko snippets: exit %d after %.1fs", code, time.Since(start).Seconds())
	if code != 0 {
		t.Fatalf("kaniko failed:\n%s", tail(out, 40))
	}
	cfg, err := os.ReadFile(filepath.Join(rootfs, "kaniko", ".docker", "config.json"))
	if err != nil || !strings.Contains(string(cfg), `"auths":{"`+reg+`"`) {
		t.Errorf("/kaniko/.docker/config.json: %v %s", err, cfg)
	}
	if strings.Contains(out, "e2e-password") {
		t.Error("the registry password is in Kaniko's output")
	}
	layers, err := image(t, repo+":latest").Layers()
	if err != nil {
		t.Fatal(err)
	}
	if _, data := layerFiles(t, layers[len(layers)-1], map[string]bool{"hello": true}); string(data["hello"]) != "built-by-kaniko\n" {
		t.Errorf("%s:latest has /hello %q in its last layer", repo, data["hello"])
	}
	cacheRepo, err := name.NewRepository(repo + "-cache")
	if err != nil {
		t.Fatal(err)
	}
	if tags, err := remote.List(cacheRepo); err != nil || len(tags) == 0 {
		t.Errorf("no cache in %s: %v %v", cacheRepo, tags, err)
	}
}

// jobUserScript runs, in the image, what a workflow job does as the job
// user (runner, uid 1001, HOME /home/runner, no supplementary groups, as
// the worker starts the runner): Python, a venv, pip --user, the tool
// cache; sudo refused; then, as root, writes the sudoers file the worker
// writes when the endpoint enables sudo, and sudo works.
const jobUserScript = `set -eu
as_runner() { setpriv --reuid=runner --regid=runner --clear-groups env HOME=/home/runner USER=runner LOGNAME=runner "$@"; }
as_runner sh -ec '
  cd "$HOME"
  python --version
  python3 -m venv /tmp/venv
  /tmp/venv/bin/python -m pip --version
  python3 -m pip --version
  mkdir -p /tmp/hello
  printf "%s\n" "[build-system]" "requires = [\"setuptools\"]" "build-backend = \"setuptools.build_meta\"" \
    "[project]" "name = \"hello\"" "version = \"1.0\"" > /tmp/hello/pyproject.toml
  echo "WORDS = \"hello from pip --user\"" > /tmp/hello/hello.py
  python3 -m pip install --user --no-index --no-build-isolation --quiet /tmp/hello
  python -c "import hello; print(hello.WORDS)"
  test "$RUNNER_TOOL_CACHE" = /opt/hostedtoolcache
  test "$AGENT_TOOLSDIRECTORY" = /opt/hostedtoolcache
  mkdir -p "$RUNNER_TOOL_CACHE/Python/3.12.0/x64" "$HOME/.cache/x"
  echo "tool cache and HOME writable"
'
if as_runner sudo -n true 2>/dev/null; then echo "sudo works without the setting" >&2; exit 1; fi
echo "sudo refused without the setting"
test -d /etc/sudoers.d
echo 'runner ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/wgr-runner
chmod 0440 /etc/sudoers.d/wgr-runner
as_runner sudo -n true
as_runner sudo -n apt-get --version | head -n 1
echo "sudo with the setting: ok"
`

// The job user has Python (python, pip, venv, pip install --user), a
// writable HOME and tool cache, and no sudo until the worker writes the
// sudoers file (issue 19).
func TestImageJobUserPythonAndSudo(t *testing.T) {
	needRunc(t)
	_, img := cpuImage(t)
	rootfs := newBundle(t, img)
	c := container{rootfs: rootfs, args: []string{"/bin/sh", "-c", jobUserScript}, env: imageEnv(t, img), caps: dockerCaps}
	out, code := c.run(t, 3*time.Minute)
	t.Logf("job user checks:\n%s", out)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, tail(out, 40))
	}
	for _, want := range []string{"Python 3", "hello from pip --user", "tool cache and HOME writable", "sudo refused without the setting", "apt ", "sudo with the setting: ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// checkScalerImage checks the scaler variant of a matrix build: its tags
// point at the digest the metadata reports, and checkScalerContract.
func checkScalerImage(t *testing.T, repo string, meta variantMeta, tags []string, version string) {
	t.Helper()
	if meta.Digest == "" {
		t.Fatal("metadata lacks the scaler variant")
	}
	for _, tag := range tags {
		if d, err := resolve(t, repo+":"+tag); err != nil || d != meta.Digest {
			t.Errorf("%s:%s -> %s (%v), metadata says %s", repo, tag, d, err, meta.Digest)
		}
	}
	checkScalerContract(t, image(t, repo+":"+tags[0]), version)
}

// checkScalerContract checks a scaler image: the static scaler on the
// distroless stand-in as its nonroot user, with no runner, Kaniko or
// worker, and (with runc) that it runs there.
func checkScalerContract(t *testing.T, img v1.Image, version string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if ep := cf.Config.Entrypoint; len(ep) != 1 || ep[0] != "/usr/local/bin/scaler" || cf.Config.User != "65532:65532" {
		t.Errorf("scaler: entrypoint %v, user %q", ep, cf.Config.User)
	}
	l := cf.Config.Labels
	if l["io.runpod.worker-github-runner.flavour"] != "scaler" || l["io.runpod.worker-github-runner.runner-version"] != "" ||
		l["org.opencontainers.image.base.name"] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("scaler: labels %v", l)
	}
	hdrs, data := topFiles(t, img, []string{"usr/local/bin/scaler", "actions-runner/run.sh", "kaniko/executor", "usr/local/bin/worker"})
	for _, p := range []string{"actions-runner/run.sh", "kaniko/executor", "usr/local/bin/worker"} {
		if hdrs[p] != nil {
			t.Errorf("scaler: image has /%s", p)
		}
	}
	f, err := elf.NewFile(bytes.NewReader(data["usr/local/bin/scaler"]))
	if err != nil {
		t.Fatalf("scaler: not ELF: %v", err)
	}
	if err := workerbin.CheckELF(f, "usr/local/bin/scaler", "linux/amd64"); err != nil {
		t.Errorf("scaler: %v", err)
	}
	if hasRunc() {
		scalerRuns(t, img, version)
	}
}

// scalerRuns runs the scaler image's binary in runc as uid 65532: its
// version, then --check of a configuration mounted read-only beside a
// state folder it owns (the default state_file path).
func scalerRuns(t *testing.T, img v1.Image, version string) {
	t.Helper()
	rootfs := newBundle(t, img)
	env := append(imageEnv(t, img), "RUNPOD_API_KEY=rp-e2e-key", "GITHUB_PAT=ghp-e2e-token")
	c := container{rootfs: rootfs, env: env, uid: 65532, gid: 65532, args: []string{"/usr/local/bin/scaler", "--version"}}
	if out, code := c.run(t, time.Minute); code != 0 || strings.TrimSpace(out) != "scaler "+version {
		t.Errorf("scaler --version: exit %d, %q", code, out)
	}
	size := int64(0)
	if layers, err := img.Layers(); err == nil {
		for _, l := range layers {
			n, _ := l.Size()
			size += n
		}
	}
	t.Logf("scaler image: %d layers compressed %.1f MB; --version as uid 65532 in runc: ok", len(configOf(t, img).RootFS.DiffIDs), float64(size)/1e6)
	conf, state := t.TempDir(), t.TempDir()
	cfg := "github_url = \"https://github.com/my-org\"\n\nscale_set \"runpod-cpu\" {\n  endpoint    = \"def456\"\n  max_runners = 2\n}\n"
	if err := os.WriteFile(filepath.Join(conf, "scaler.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(conf, 0o755)
	if err := os.Chown(state, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	c.args = []string{"/usr/local/bin/scaler", "--check", "--config", "/etc/runpod-scaler/scaler.hcl"}
	out, code := c.runWithMounts(t, time.Minute, map[string]string{"/etc/runpod-scaler": conf, "/var/lib/runpod-scaler": state})
	if code != 0 || !strings.Contains(out, "configuration valid (1 scale sets)") || strings.Contains(out, "e2e-key") || strings.Contains(out, "e2e-token") {
		t.Errorf("scaler --check: exit %d\n%s", code, out)
	}
	t.Logf("scaler --check as uid 65532 in runc: %s", strings.TrimSpace(out))
}

func configOf(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	c, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
