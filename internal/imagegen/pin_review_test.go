package imagegen

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/pin"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// pin adds and updates the pins of what the matrix, as resolved with the
// variables given, pulls; it removes a pin only with --prune. A pin no
// build pulls is a note, for pin and for --check (exit 0) (issue 17).
func TestPinRemovesOnlyWithPrune(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host, push := newMirror(t)
	push("nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04")
	file, _ := copyVariants(t)
	mirrors := []string{"--mirror", "docker.io=" + host, "--mirror", "gcr.io=" + host}
	pinWith := func(args ...string) (int, string, string) {
		return run(append(append([]string{"-f", file}, args...), mirrors...)...)
	}
	if code, out, errOut := pinWith("pin"); code != ExitOK {
		t.Fatalf("pin: exit %d\n%s%s", code, out, errOut)
	}
	pinned := readString(t, file)

	code, out, errOut := pinWith("--var", "CUDA_VERSION=12.8.1", "pin")
	after := readString(t, file)
	if code != ExitOK || !strings.Contains(out, "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04: pinned to") ||
		!strings.Contains(after, `"nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"`) || !strings.Contains(after, `"nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"`) {
		t.Fatalf("pin with CUDA_VERSION=12.8.1: exit %d\n%s%s\n%s", code, out, errOut, after)
	}
	note := "pin nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04: no build of this matrix pulls it; kept (imagegen pin --prune removes it)\n"
	if !strings.Contains(errOut, note) || strings.Contains(out, "12.6.3") {
		t.Errorf("pin with CUDA_VERSION=12.8.1 does not note the 12.6.3 pin on stderr alone:\n%s%s", out, errOut)
	}
	// Without the override the 12.8.1 pin is unused: a note, exit 0.
	note = strings.Replace(note, "12.6.3", "12.8.1", 1)
	if code, out, errOut = pinWith("pin", "--check"); code != ExitOK || !strings.Contains(errOut, note) || strings.Contains(out, "12.8.1") {
		t.Fatalf("pin --check with an unused pin: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = pinWith("pin"); code != ExitOK || !strings.Contains(errOut, note) || !strings.Contains(out, "all 5 pins current") || readString(t, file) != after {
		t.Fatalf("pin with an unused pin: exit %d, the file changed: %v\n%s%s", code, readString(t, file) != after, out, errOut)
	}
	code, out, errOut = pinWith("pin", "--prune")
	if code != ExitOK || !strings.Contains(out, "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04: pin sha256:") || !strings.Contains(out, "removed (no build of this matrix pulls it)") ||
		strings.Contains(errOut, "kept") || readString(t, file) != pinned {
		t.Fatalf("pin --prune: exit %d\n%s%s\n%s", code, out, errOut, readString(t, file))
	}
	// --prune with a variable prunes what that matrix does not pull, naming it.
	code, out, errOut = pinWith("--var", "CUDA_VERSION=12.8.1", "pin", "--prune")
	if code != ExitOK || !strings.Contains(out, "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04: pin sha256:") || !strings.Contains(out, "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04: pinned to") ||
		strings.Contains(readString(t, file), `"nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"`) {
		t.Fatalf("pin --prune with CUDA_VERSION=12.8.1: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ = run("pin", "--help"); code != ExitOK || !strings.Contains(out, "--prune") || strings.Contains(out, "without overrides") {
		t.Errorf("pin --help does not describe --prune, or still the old rule:\n%s", out)
	}
	if code, _, errOut = run("-f", file, "pin", "--check", "--prune"); code != ExitUsage || !strings.Contains(errOut, "--prune") {
		t.Errorf("pin --check --prune: exit %d, want a usage error\n%s", code, errOut)
	}
}

// fakePins are pins of every reference the project's variants pull (no
// registry needed: the digests are never looked up).
const fakePins = `
pins = {
  "ubuntu:24.04"                                 = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04" = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  "gcr.io/kaniko-project/executor:v1.23.2"       = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  "golang:1.26.8"                                = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  "gcr.io/distroless/static-debian12:nonroot"    = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
}
`

// --no-pins and IMAGEGEN_NO_PINS=1 build a pinned file on its tags (local
// stand-ins with other digests, mirrors) (finding 2).
func TestNoPins(t *testing.T) {
	file, orig := copyVariants(t)
	if err := os.WriteFile(file, append(orig, fakePins...), 0o644); err != nil {
		t.Fatal(err)
	}
	render := func(args ...string) string {
		t.Helper()
		dir := t.TempDir()
		code, _, errOut := run(append(append([]string{"-f", file}, args...), "render", "--out", dir, "--no-root", "--no-lint")...)
		if code != ExitOK {
			t.Fatalf("render %q: exit %d\n%s", args, code, errOut)
		}
		return readString(t, filepath.Join(dir, "cpu.Dockerfile"))
	}
	if cpu := render(); !strings.Contains(cpu, "FROM ubuntu:24.04@sha256:") {
		t.Fatalf("pinned render:\n%s", cpu)
	}
	if cpu := render("--no-pins"); strings.Contains(cpu, "@sha256:") || !strings.Contains(cpu, "FROM ubuntu:24.04\n") {
		t.Errorf("render --no-pins still pins:\n%s", cpu)
	}
	t.Setenv("IMAGEGEN_NO_PINS", "1")
	if cpu := render(); strings.Contains(cpu, "@sha256:") {
		t.Errorf("IMAGEGEN_NO_PINS=1 render still pins:\n%s", cpu)
	}
	t.Setenv("IMAGEGEN_NO_PINS", "yes please")
	if code, _, errOut := run("-f", file, "list"); code != ExitUsage || !strings.Contains(errOut, "IMAGEGEN_NO_PINS") {
		t.Errorf("IMAGEGEN_NO_PINS=%q: exit %d\n%s", "yes please", code, errOut)
	}
}

// --mirror errors name the flag by its index and never echo the value
// (finding 6).
func TestPinMirrorErrorsHideTheValue(t *testing.T) {
	code, _, errOut := run("-f", realFile, "pin", "--mirror", "docker.io=127.0.0.1:5000", "--mirror", "gcr.io=user:S3cr3t@127.0.0.1:5000")
	if code != ExitUsage || !strings.Contains(errOut, "--mirror #2") || !strings.Contains(errOut, "credentials") || strings.Contains(errOut, "S3cr3t") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
}

// A symlinked file is written through its link, its mode kept (finding 4).
func TestWriteFileAtomicKeepsLinkAndMode(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.hcl")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "variants.hcl")
	if err := os.Symlink("real.hcl", link); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(link)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link became a regular file (%v)", err)
	}
	fi, err = os.Stat(target)
	if err != nil || fi.Mode().Perm() != 0o600 || readString(t, target) != "new" {
		t.Errorf("target: mode %v, %q (%v); want 0600, new", fi.Mode().Perm(), readString(t, target), err)
	}
	fresh := filepath.Join(dir, "fresh")
	if err := writeFileAtomic(fresh, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o644 {
		t.Errorf("a new file has mode %v, want 0644", fi.Mode().Perm())
	}
}

// editOnFirstRequest edits the file while pin looks the images up.
type editOnFirstRequest struct {
	file string
	done atomic.Bool
}

func (e *editOnFirstRequest) RoundTrip(r *http.Request) (*http.Response, error) {
	if e.done.CompareAndSwap(false, true) {
		b, _ := os.ReadFile(e.file)
		os.WriteFile(e.file, append(b, "# an edit made meanwhile\n"...), 0o644)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// pin does not overwrite edits made while it looked the images up.
func TestPinRefusesAFileChangedMeanwhile(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host, _ := newMirror(t)
	file, _ := copyVariants(t)
	r := &pin.Resolver{Mirrors: pin.Mirrors{}, Transport: &editOnFirstRequest{file: file}}
	for _, m := range []string{"docker.io=" + host, "gcr.io=" + host} {
		if err := r.Mirrors.Set(m); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	err := runPin(context.Background(), &stdout, &stderr, &matrixFlags{files: []string{file}}, &pinFlags{}, r)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitFailure || !strings.Contains(err.Error(), "changed while pin ran; nothing written") {
		t.Fatalf("err = %v\n%s", err, stdout.String())
	}
	if got := readString(t, file); !strings.HasSuffix(got, "# an edit made meanwhile\n") || strings.Contains(got, "pins = {") {
		t.Errorf("the edit was lost or pins written:\n%s", got[max(0, len(got)-300):])
	}
}

// A release build's SBOM scanner is pinned and passed as generator=ref@digest
// (finding 8).
func TestPinSBOMScanner(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host, push := newMirror(t)
	digest := push("docker/buildkit-syft-scanner:stable-1")
	file, _ := copyVariants(t)
	code, out, errOut := run("-f", file, "--var", "RELEASE=v1.0.0", "pin", "--mirror", "docker.io="+host, "--mirror", "gcr.io="+host)
	if code != ExitOK || !strings.Contains(out, "docker/buildkit-syft-scanner:stable-1: pinned to "+pin.Short(digest)) {
		t.Fatalf("pin: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("-f", file, "--var", "RELEASE=v1.0.0", "--var", "LATEST=true", "print", "cpu")
	if code != ExitOK || !strings.Contains(out, "type=sbom,generator=docker/buildkit-syft-scanner:stable-1@"+digest) {
		t.Fatalf("print: exit %d\n%s%s", code, out, errOut)
	}
	// A dev pin (base-pin's, --check in CI) keeps the scanner's pin: only
	// release builds pull it (issue 17).
	pinned := readString(t, file)
	for _, args := range [][]string{{"pin"}, {"pin", "--check"}} {
		code, out, errOut = run(append([]string{"-f", file}, append(args, "--mirror", "docker.io="+host, "--mirror", "gcr.io="+host)...)...)
		if code != ExitOK || !strings.Contains(errOut, "pin docker/buildkit-syft-scanner:stable-1: no build of this matrix pulls it; kept") || readString(t, file) != pinned {
			t.Errorf("%q: exit %d, the file changed: %v\n%s%s", args, code, readString(t, file) != pinned, out, errOut)
		}
	}
}

// base-pin.yml pins the release matrix alone: it must pull every image the
// dev matrix pulls.
func TestReleaseMatrixPullsEveryDevImage(t *testing.T) {
	refs := func(vars ...string) []string {
		m, _, diags := variants.LoadFiles([]string{realFile}, variants.Options{Vars: vars, NoPins: true, LookupEnv: func(string) (string, bool) { return "", false }})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		return variants.ImageRefs(m)
	}
	dev, release := refs(), refs("RELEASE=v0.0.0")
	for _, r := range dev {
		if !slices.Contains(release, r) {
			t.Errorf("the dev matrix pulls %s, the release matrix does not: base-pin.yml must pin both", r)
		}
	}
	if !slices.Contains(release, variants.DefaultSBOMGenerator) {
		t.Errorf("the release matrix does not pull the SBOM scanner: %v", release)
	}
}

// A build-time --attest type=sbom replaces the variant's pinned SBOM entry:
// it gets the generator's pin too, default generator or named (issue 17).
func TestAttestFlagGetsTheGeneratorPin(t *testing.T) {
	file, orig := copyVariants(t)
	scanner := "sha256:" + strings.Repeat("b", 64)
	named := "sha256:" + strings.Repeat("c", 64)
	pins := strings.Replace(fakePins, "}\n", `  "docker/buildkit-syft-scanner:stable-1" = "`+scanner+`"
  "127.0.0.1:5000/scanner:1" = "`+named+`"
}
`, 1)
	if err := os.WriteFile(file, append(orig, pins...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ args, want string }{
		{"--attest type=sbom", "type=sbom,generator=docker/buildkit-syft-scanner:stable-1@" + scanner},
		{"--var RELEASE=v1.0.0 --attest type=sbom", "type=provenance,mode=max type=sbom,generator=docker/buildkit-syft-scanner:stable-1@" + scanner},
		{"--attest type=sbom,generator=127.0.0.1:5000/scanner:1", "type=sbom,generator=127.0.0.1:5000/scanner:1@" + named},
		{"--no-pins --attest type=sbom", "type=sbom"},
	} {
		got, _ := attestWith(t, file, strings.Fields(tc.args)...)
		for _, v := range []string{"cpu", "gpu", "scaler"} {
			if strings.Join(got[v], " ") != tc.want {
				t.Errorf("%s: %s: %v, want %s", tc.args, v, got[v], tc.want)
			}
		}
	}
	// Pins without the scanner's: built unpinned, with a warning.
	if err := os.WriteFile(file, append(orig, fakePins...), 0o644); err != nil {
		t.Fatal(err)
	}
	got, errOut := attestWith(t, file, "--attest", "type=sbom")
	want := "warning: --attest type=sbom: pins has no entry for docker/buildkit-syft-scanner:stable-1: the SBOM runs on what its tag points at now (imagegen --var RELEASE=v0.0.0 pin pins it)\n"
	if strings.Join(got["cpu"], " ") != "type=sbom" || strings.Count(errOut, want) != 1 {
		t.Errorf("unpinned scanner: %v\n%s", got["cpu"], errOut)
	}
}

// attestWith builds file's matrix with the fake backend and gives each
// variant's attestations as BuildKit would get them, and stderr; args
// before the first --attest are the matrix's flags, the rest build's.
func attestWith(t *testing.T, file string, args ...string) (map[string][]string, string) {
	t.Helper()
	fb := withFakeBackend(t)
	fb.caps.Attestations = true
	at := slices.Index(args, "--attest")
	full := append(append([]string{"-f", file}, args[:at]...), "build", "--builder", "fake", "--progress", "quiet",
		"--output", filepath.Join(t.TempDir(), "oci"), "--worker-bin", "linux/amd64="+staticBinary(t))
	code, o, e := run(append(full, args[at:]...)...)
	if code != ExitOK {
		t.Fatalf("%q: exit %d\n%s%s", args, code, o, e)
	}
	out := map[string][]string{}
	for _, r := range fb.reqs {
		for _, a := range r.Attest {
			out[r.Variant.Name] = append(out[r.Variant.Name], a.String())
		}
	}
	return out, e
}
