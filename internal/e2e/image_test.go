package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

const testPAT = "ghp_E2EPAT0123456789abcdefghijklmnopqrstu"

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
	rootfs := newBundle(t, img)
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
	for _, want := range []string{"self-hosted", "linux", "x64", "runpod", "cpu", "e2e-pin"} {
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
