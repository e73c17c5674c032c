package imagegen

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/render"
)

// fakeBackend is a backend the CLI knows only through its capabilities:
// one build at a time, no secrets, its own context folder.
type fakeBackend struct {
	caps build.Capabilities
	mu   sync.Mutex
	reqs []*build.Request
	// running and most count builds at once.
	running, most int
	closed        bool
}

func (f *fakeBackend) Capabilities() build.Capabilities            { return f.caps }
func (f *fakeBackend) Open(context.Context) (build.Session, error) { return f, nil }
func (f *fakeBackend) Registry() *registry.Client                  { return &registry.Client{} }
func (f *fakeBackend) String() string                              { return "with Fake" }
func (f *fakeBackend) Close() error                                { f.closed = true; return nil }

func (f *fakeBackend) add(n int, r *build.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running += n
	f.most = max(f.most, f.running)
	if r != nil {
		f.reqs = append(f.reqs, r)
	}
}

func (f *fakeBackend) Build(_ context.Context, r *build.Request) (*build.Result, error) {
	f.add(1, r)
	defer f.add(-1, nil)
	bin := "worker-linux-amd64"
	if r.Variant.IsScaler() {
		bin = render.ScalerBinary("linux/amd64")
	}
	if _, err := os.Stat(filepath.Join(r.ContextDir, bin)); err != nil {
		return nil, err
	}
	return &build.Result{Digest: "sha256:" + strings.Repeat("a", 64)}, nil
}

func withFakeBackend(t *testing.T) *fakeBackend {
	fb := &fakeBackend{caps: build.Capabilities{Name: "Fake", MaxJobs: 1, ContextDir: filepath.Join(t.TempDir(), "ctx")}}
	backends["fake"] = func(*buildFlags, io.Writer) build.Backend { return fb }
	t.Cleanup(func() { delete(backends, "fake") })
	return fb
}

// The CLI learns what a backend needs from its capabilities, not its
// name: the worker goes into the backend's own context folder, builds run
// one at a time whatever --jobs says, and the outputs come from --output.
func TestBackendCapabilitiesDriveTheCLI(t *testing.T) {
	fb := withFakeBackend(t)
	out := filepath.Join(t.TempDir(), "oci")
	code, o, e := run("-f", realFile, "build", "--builder", "fake", "--jobs", "0", "--progress", "quiet",
		"--output", out, "--worker-bin", "linux/amd64="+staticBinary(t))
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	if fb.most != 1 || !fb.closed || !strings.Contains(e, "variant(s) with Fake") {
		t.Errorf("%d builds at once, closed %v, stderr:\n%s", fb.most, fb.closed, e)
	}
	for _, r := range fb.reqs {
		if r.ContextDir != fb.caps.ContextDir || r.Output.Kind() != build.OCILayoutKind || r.Output.Dir() != filepath.Join(out, r.Variant.Name) {
			t.Errorf("%s: context %s, output %v", r.Variant.Name, r.ContextDir, r.Output)
		}
	}
	if len(fb.reqs) < 2 || !strings.Contains(o, filepath.Join(out, fb.reqs[0].Variant.Name)) {
		t.Errorf("%d requests; summary:\n%s", len(fb.reqs), o)
	}
}

// --runner-netrc is refused, as a usage error before anything runs, for
// any backend that says it has no build secrets.
func TestBackendWithoutSecretsRefusesRunnerNetrc(t *testing.T) {
	withFakeBackend(t)
	netrc := filepath.Join(t.TempDir(), "netrc")
	os.WriteFile(netrc, []byte("machine x login u password s3cret\n"), 0o600)
	code, o, e := run("-f", realFile, "build", "--dry-run", "--builder", "fake", "--runner-netrc", netrc)
	if code != ExitUsage || !strings.Contains(e, "--runner-netrc is not supported with --builder fake: Fake has no build secrets") || strings.Contains(o+e, "s3cret") {
		t.Errorf("exit %d\n%s%s", code, o, e)
	}
}

// A backend with named contexts gets the self-contained Dockerfile and the
// worker binaries as the named context that replaces its worker stage; one
// without (Kaniko) gets the prepared Dockerfile, which copies them from the
// build context. Neither compiles the worker in the Dockerfile.
func TestWorkerReachesTheBackendItsWay(t *testing.T) {
	for _, named := range []bool{false, true} {
		fb := withFakeBackend(t)
		fb.caps.NamedContexts = named
		out := filepath.Join(t.TempDir(), "oci")
		code, o, e := run("-f", realFile, "build", "--builder", "fake", "--progress", "quiet",
			"--output", out, "--worker-bin", "linux/amd64="+staticBinary(t), "cpu")
		if code != ExitOK || len(fb.reqs) != 1 {
			t.Fatalf("named=%v: exit %d, %d requests\n%s%s", named, code, len(fb.reqs), o, e)
		}
		r := fb.reqs[0]
		df := string(r.Dockerfile)
		if named {
			// Both worker stages: BuildKit then never looks up the Go image.
			if r.NamedContexts[render.WorkerStage] != fb.caps.ContextDir || r.NamedContexts[render.WorkerBuildStage] != fb.caps.ContextDir ||
				!strings.Contains(df, "COPY --from=worker /worker-linux-${TARGETARCH} ") {
				t.Errorf("named contexts %v, Dockerfile:\n%s", r.NamedContexts, df)
			}
		} else if len(r.NamedContexts) != 0 || strings.Contains(df, "golang") || !strings.Contains(df, "\nCOPY worker-linux-${TARGETARCH} ") {
			t.Errorf("without named contexts: named contexts %v, Dockerfile:\n%s", r.NamedContexts, df)
		}
	}
}
