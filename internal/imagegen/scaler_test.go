package imagegen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/render"
)

// The scaler variant gets cmd/scaler the way a worker variant gets the
// worker: compiled by imagegen into the context (named context replacing
// both scaler stages, or the prepared Dockerfile), and only when a scaler
// variant is selected; a scaler-only build compiles no worker.
func TestScalerReachesTheBackendItsWay(t *testing.T) {
	for _, named := range []bool{false, true} {
		fb := withFakeBackend(t)
		fb.caps.NamedContexts = named
		code, o, e := run("-f", realFile, "build", "--builder", "fake", "--progress", "quiet",
			"--output", filepath.Join(t.TempDir(), "oci"), "--worker-version", "v0.0.0-test", "scaler")
		if code != ExitOK || len(fb.reqs) != 1 {
			t.Fatalf("named=%v: exit %d, %d requests\n%s%s", named, code, len(fb.reqs), o, e)
		}
		r := fb.reqs[0]
		df := string(r.Dockerfile)
		if named {
			if len(r.NamedContexts) != 2 || r.NamedContexts[render.ScalerStage] != fb.caps.ContextDir || r.NamedContexts[render.ScalerBuildStage] != fb.caps.ContextDir {
				t.Errorf("named contexts %v", r.NamedContexts)
			}
		} else if len(r.NamedContexts) != 0 || strings.Contains(df, "golang") || !strings.Contains(df, "\nCOPY scaler-linux-${TARGETARCH} ") {
			t.Errorf("without named contexts: named contexts %v, Dockerfile:\n%s", r.NamedContexts, df)
		}
		if _, err := os.Stat(filepath.Join(fb.caps.ContextDir, "worker-linux-amd64")); err == nil {
			t.Errorf("named=%v: a scaler-only build compiled the worker", named)
		}
		if !strings.Contains(e, "compiling scaler v0.0.0-test for linux/amd64") || strings.Contains(e, "compiling worker") {
			t.Errorf("named=%v: stderr:\n%s", named, e)
		}
	}
}

// A worker-only build does not compile the scaler.
func TestWorkerBuildCompilesNoScaler(t *testing.T) {
	fb := withFakeBackend(t)
	code, o, e := run("-f", realFile, "build", "--builder", "fake", "--progress", "quiet",
		"--output", filepath.Join(t.TempDir(), "oci"), "--worker-bin", "linux/amd64="+staticBinary(t), "cpu")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	if _, err := os.Stat(filepath.Join(fb.caps.ContextDir, render.ScalerBinary("linux/amd64"))); err == nil || strings.Contains(e, "compiling scaler") {
		t.Errorf("a cpu-only build compiled the scaler (stat %v); stderr:\n%s", err, e)
	}
}
