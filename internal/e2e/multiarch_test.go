package e2e

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/build/workerbin"
	"github.com/runpod-workers/worker-github_runner/internal/platform"
)

var multiArch = []string{"linux/amd64", "linux/arm64"}

// multiArchVariant is the CPU variant with only the packages every image
// gets (ca-certificates, curl) and the runner's libraries: the emulated
// apt-get of the full CPU variant's packages (Python among them) takes
// 193 s of a 238 s cold build here, this one's 126 s of 148 s.
const multiArchVariant = `variant "cpu-multiarch" {
  inherits = ["cpu"]
  packages = []
  tags     = ["dev-cpu-multiarch"]
}
`

// needArm64 skips unless the devenv set arm64 emulation up (scripts/devenv
// says why it could not, and writes the reason into its env file).
func needArm64(t *testing.T) {
	t.Helper()
	needRunc(t)
	if devenv["WGR_ARM64"] != "1" {
		t.Skipf("the devenv has no arm64 emulation (WGR_ARM64=%q): %s", devenv["WGR_ARM64"], devenv["WGR_ARM64_REASON"])
	}
}

// A CPU variant built for linux/amd64 and linux/arm64 is one index with
// both platforms; each platform's image carries a worker, a runner
// listener and a Kaniko executor for its own machine; and the arm64 image,
// unpacked and run with runc under qemu-user emulation, passes the
// worker's selftest, then runs a job as TestImageRunsAsWorker does (issue 17).
func TestMultiArchIndexAndArm64Selftest(t *testing.T) {
	needArm64(t)
	reg := uniqueRegistry(t)
	extra := filepath.Join(t.TempDir(), "multiarch.hcl")
	if err := os.WriteFile(extra, []byte(multiArchVariant), 0o644); err != nil {
		t.Fatal(err)
	}
	plats, _ := json.Marshal(multiArch)
	r := build(t, 10*time.Minute, []string{"REGISTRY=" + reg, "PLATFORMS=" + string(plats)},
		"-f", extra, "cpu-multiarch")
	if r.code != 0 {
		t.Fatalf("multi-platform build failed (%d):\n%s\n%s", r.code, r.stdout, tail(r.stderr, 60))
	}
	meta := r.meta["cpu-multiarch"]
	t.Logf("cpu-multiarch for %v: %.1fs, %d of %d steps cached", multiArch, r.duration.Seconds(), meta.CachedSteps, meta.Steps)
	if !slices.Equal(meta.Platforms, multiArch) {
		t.Errorf("metadata platforms %v, want %v", meta.Platforms, multiArch)
	}
	ref := reg + "/worker-github_runner:dev-cpu-multiarch"
	imgs := indexImages(t, ref)
	if d, err := resolve(t, ref); err != nil || d != meta.Digest {
		t.Errorf("%s -> %s (%v), metadata says %s", ref, d, err, meta.Digest)
	}
	for _, p := range multiArch {
		img, ok := imgs[p]
		if !ok {
			t.Fatalf("%s has no %s image (it has %v)", ref, p, platformsOf(imgs))
		}
		checkMachine(t, img, p)
	}
	start := time.Now()
	rootfs := newBundle(t, imgs["linux/arm64"])
	t.Logf("arm64 image unpacked in %.1fs", time.Since(start).Seconds())
	arm64Selftest(t, imgs["linux/arm64"], rootfs)
	// A whole job, the arm64 runner listener included, under emulation.
	runsAsWorker(t, imgs["linux/arm64"], rootfs, "cpu")
}

// indexImages reads the index at ref: its images by platform, attestation
// manifests (platform unknown/unknown) left out.
func indexImages(t *testing.T, ref string) map[string]v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("%s is not an index: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS == "unknown" {
			continue
		}
		p := d.Platform.OS + "/" + d.Platform.Architecture
		if _, dup := out[p]; dup {
			t.Errorf("%s has two %s images", ref, p)
		}
		if out[p], err = idx.Image(d.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) != len(multiArch) {
		t.Errorf("%s has the platforms %v, want %v", ref, platformsOf(out), multiArch)
	}
	return out
}

func platformsOf(m map[string]v1.Image) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	slices.Sort(k)
	return k
}

// checkMachine checks that an image's config names the platform and that
// its worker (a static executable), runner listener and Kaniko executor
// are ELF files for the platform's machine.
func checkMachine(t *testing.T, img v1.Image, plat string) {
	t.Helper()
	p, _ := platform.Lookup(plat)
	if cf := configOf(t, img); cf.OS != p.OS || cf.Architecture != p.DockerArch {
		t.Errorf("%s image: config says %s/%s", plat, cf.OS, cf.Architecture)
	}
	paths := []string{"usr/local/bin/worker", "actions-runner/bin/Runner.Listener", "kaniko/executor"}
	_, data := topFiles(t, img, paths)
	for _, path := range paths {
		f, err := elf.NewFile(bytes.NewReader(data[path]))
		if err != nil {
			t.Errorf("%s image: /%s is not ELF: %v", plat, path, err)
			continue
		}
		if path == "usr/local/bin/worker" {
			if err := workerbin.CheckELF(f, path, plat); err != nil {
				t.Errorf("%s image: %v", plat, err)
			}
		} else if f.Machine != p.Machine {
			t.Errorf("%s image: /%s is for %v, want %v", plat, path, f.Machine, p.Machine)
		}
		t.Logf("%s image: /%s is %v", plat, path, f.Machine)
	}
}

// arm64Selftest runs `worker --test_input {"input":{"selftest":true}}` in
// the arm64 image with runc (what the RunPod Hub's tests send); the
// container's shell says the machine is aarch64, so nothing ran natively.
func arm64Selftest(t *testing.T, img v1.Image, rootfs string) {
	t.Helper()
	script := `uname -m; exec /usr/local/bin/worker --test_input '{"input": {"selftest": true}}'`
	c := container{rootfs: rootfs, args: []string{"/bin/sh", "-c", script}, env: imageEnv(t, img), caps: dockerCaps}
	start := time.Now()
	out, code := c.run(t, 3*time.Minute)
	t.Logf("arm64 selftest under emulation: exit %d after %.1fs", code, time.Since(start).Seconds())
	if code != 0 {
		t.Fatalf("selftest exited %d:\n%s", code, tail(out, 40))
	}
	if first, _, _ := strings.Cut(out, "\n"); first != "aarch64" {
		t.Errorf("uname -m in the arm64 container says %q, want aarch64", first)
	}
	i := strings.Index(out, "{\n")
	if i < 0 {
		t.Fatalf("no JSON result in:\n%s", tail(out, 40))
	}
	var res struct {
		Output struct {
			OK       bool     `json:"ok"`
			Problems []string `json:"problems"`
			Flavour  string   `json:"flavour"`
			Kaniko   bool     `json:"kaniko"`
			Labels   []string `json:"labels"`
		} `json:"output"`
	}
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&res); err != nil {
		t.Fatalf("result: %v\n%s", err, tail(out, 40))
	}
	o := res.Output
	if !o.OK || len(o.Problems) != 0 || o.Flavour != "cpu" || !o.Kaniko {
		t.Errorf("selftest result %+v", o)
	}
	if !slices.Contains(o.Labels, "arm64") || slices.Contains(o.Labels, "x64") {
		t.Errorf("the arm64 worker's labels %v: want arm64, not x64", o.Labels)
	}
	t.Logf("selftest: %+v", o)
}
