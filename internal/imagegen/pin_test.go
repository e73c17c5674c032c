package imagegen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/pin"
	"github.com/runpod-workers/worker-github_runner/internal/retry"
)

// standIns are the references variants.hcl pulls, as a mirror of docker.io
// and gcr.io holds them (the devenv's layout).
var standIns = []string{
	"library/ubuntu:24.04",
	"nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04",
	"kaniko-project/executor:v1.23.2",
	"library/golang:1.26.8",
	"distroless/static-debian12:nonroot",
}

// newMirror serves stand-ins of variants.hcl's images on loopback (ubuntu
// as a two-platform index); it returns its host and a function that moves
// a tag to a new image.
func newMirror(t *testing.T) (string, func(repoTag string) string) {
	t.Helper()
	s := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "http://")
	push := func(repoTag string) string {
		ref, err := name.NewTag(host + "/" + repoTag)
		if err != nil {
			t.Fatal(err)
		}
		var d v1.Hash
		if strings.Contains(repoTag, "ubuntu") {
			idx, _ := random.Index(64, 1, 2)
			err, d = remote.WriteIndex(ref, idx), mustDigest(idx.Digest())
		} else {
			img, _ := random.Image(64, 1)
			err, d = remote.Write(ref, img), mustDigest(img.Digest())
		}
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	for _, r := range standIns {
		push(r)
	}
	return host, push
}

func mustDigest(h v1.Hash, err error) v1.Hash {
	if err != nil {
		panic(err)
	}
	return h
}

// copyVariants copies the project's variants.hcl into a temporary folder.
func copyVariants(t *testing.T) (string, []byte) {
	t.Helper()
	src, err := os.ReadFile(realFile)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "variants.hcl")
	if err := os.WriteFile(p, src, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, src
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPinWritesChecksAndFollowsAMovedTag(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // anonymous
	host, push := newMirror(t)
	file, orig := copyVariants(t)
	mirrors := []string{"--mirror", "docker.io=" + host, "--mirror", "gcr.io=" + host}
	pinArgs := append([]string{"-f", file, "pin"}, mirrors...)

	code, out, errOut := run(append(pinArgs, "--check")...)
	if code != ExitFailure || strings.Count(out, "not pinned") != 5 {
		t.Fatalf("check before pinning: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(pinArgs...)
	if code != ExitOK || strings.Count(out, ": pinned to sha256:") != 5 {
		t.Fatalf("pin: exit %d\n%s%s", code, out, errOut)
	}
	pinned := readString(t, file)
	rest, ok := strings.CutPrefix(pinned, string(orig))
	if !ok || !strings.HasPrefix(rest, "\n# Written by `imagegen pin`") || strings.Count(rest, "= \"sha256:") != 5 {
		t.Fatalf("pin changed more than it appended, or not the pins:\n%s", rest)
	}
	for _, ref := range []string{`"ubuntu:24.04"`, `"nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"`, `"gcr.io/kaniko-project/executor:v1.23.2"`, `"golang:1.26.8"`, `"gcr.io/distroless/static-debian12:nonroot"`} {
		if !strings.Contains(rest, ref) {
			t.Errorf("no pin keyed %s:\n%s", ref, rest)
		}
	}
	if code, out, _ = run(pinArgs...); code != ExitOK || !strings.Contains(out, "all 5 pins current") || readString(t, file) != pinned {
		t.Fatalf("a second pin: exit %d, %s", code, out)
	}
	if code, out, errOut = run(append(pinArgs, "--check")...); code != ExitOK {
		t.Fatalf("check after pinning: exit %d\n%s%s", code, out, errOut)
	}

	// The tag moves upstream: --check names it and both digests, pin follows.
	old := regexp.MustCompile(`"ubuntu:24.04" += "(sha256:[0-9a-f]{64})"`).FindStringSubmatch(pinned)[1]
	moved := push("library/ubuntu:24.04")
	code, out, _ = run(append(pinArgs, "--check")...)
	want := "ubuntu:24.04: pinned " + pin.Short(old) + ", registry now has " + pin.Short(moved) + "\n"
	if code != ExitFailure || out != want || readString(t, file) != pinned {
		t.Fatalf("check after the tag moved: exit %d, stdout %q, want %q", code, out, want)
	}
	code, out, _ = run(pinArgs...)
	if code != ExitOK || !strings.Contains(out, "ubuntu:24.04: "+pin.Short(old)+" → "+pin.Short(moved)) {
		t.Fatalf("pin after the tag moved: exit %d\n%s", code, out)
	}
	if got := readString(t, file); got != strings.Replace(pinned, old, moved, 1) {
		t.Fatalf("pin after the tag moved changed more than the digest:\n%s", got)
	}
}

// A pinned reference renders as ref@digest; a variable that changes it
// leaves it unpinned, with one warning.
func TestPinnedBaseRenders(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host, _ := newMirror(t)
	file, _ := copyVariants(t)
	if code, out, errOut := run("-f", file, "pin", "--mirror", "docker.io="+host, "--mirror", "gcr.io="+host); code != ExitOK {
		t.Fatalf("pin: exit %d\n%s%s", code, out, errOut)
	}
	dir := t.TempDir()
	if code, _, errOut := run("-f", file, "render", "--out", dir, "--no-root"); code != ExitOK || errOut != "" {
		t.Fatalf("render: exit %d\n%s", code, errOut)
	}
	cpu := readString(t, filepath.Join(dir, "cpu.Dockerfile"))
	for _, re := range []string{`(?m)^FROM ubuntu:24\.04@sha256:[0-9a-f]{64}$`, `(?m)^FROM gcr\.io/kaniko-project/executor:v1\.23\.2@sha256:[0-9a-f]{64} AS kaniko$`, `golang:1\.26\.8@sha256:[0-9a-f]{64} AS worker-build`} {
		if !regexp.MustCompile(re).MatchString(cpu) {
			t.Errorf("cpu.Dockerfile lacks %s", re)
		}
	}
	dir = t.TempDir()
	code, _, errOut := run("-f", file, "--var", "CUDA_VERSION=12.8.1", "render", "--out", dir, "--no-root", "--no-lint")
	if code != ExitOK || strings.Count(errOut, "warning") != 1 || !strings.Contains(errOut, "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04") {
		t.Fatalf("render with CUDA_VERSION=12.8.1: exit %d\n%s", code, errOut)
	}
	if gpu := readString(t, filepath.Join(dir, "gpu.Dockerfile")); !strings.Contains(gpu, "FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04\n") {
		t.Errorf("gpu.Dockerfile does not build on the overridden tag unpinned:\n%s", gpu)
	}
}

type secretKeychain struct{}

func (secretKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: "robot", Password: "hunter2-registry-secret"}, nil
}

// Registry failures: a clear line naming the reference and the registry,
// bounded retries, no credentials, exit 1 and the file untouched.
func TestPinRegistryFailures(t *testing.T) {
	good, _ := newMirror(t)
	var manifests atomic.Int32
	serve := func(h func(w http.ResponseWriter, r *http.Request)) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" && r.Header.Get("Authorization") == "" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(401) // the keychain's credentials are sent
				return
			}
			if strings.Contains(r.URL.Path, "/manifests/") {
				manifests.Add(1)
			}
			h(w, r)
		}))
		// Closing the connections first ends a handler still hanging,
		// whatever the order the cleanups run in.
		t.Cleanup(func() { s.CloseClientConnections(); s.Close() })
		return strings.TrimPrefix(s.URL, "http://")
	}
	empty := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(empty.Close)
	gone := httptest.NewServer(nil)
	gone.Close()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	for _, tc := range []struct {
		name, mirror, want string
		maxRequests        int32
	}{
		{"404", strings.TrimPrefix(empty.URL, "http://"), "ubuntu:24.04: registry HOST (as HOST/library/ubuntu:24.04) has no such tag (HTTP 404)", 0},
		{"401", serve(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			}
			w.WriteHeader(401)
		}), "ubuntu:24.04: registry HOST (as HOST/library/ubuntu:24.04) refused access (HTTP 401): log in to it (docker login HOST) or check the name", 3},
		{"500 storm", serve(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }), "ubuntu:24.04: registry HOST (as HOST/library/ubuntu:24.04) answered HTTP 500 (3 attempts)", 9},
		{"unreachable", strings.TrimPrefix(gone.URL, "http://"), "ubuntu:24.04: registry HOST (as HOST/library/ubuntu:24.04) not reachable (3 attempts): ", 0},
		{"hangs", serve(func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}), "ubuntu:24.04: registry HOST (as HOST/library/ubuntu:24.04) not reachable (no answer within 300ms: 3 attempts of up to 100ms each)", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, orig := copyVariants(t)
			manifests.Store(0)
			r := &pin.Resolver{Mirrors: pin.Mirrors{}, Keychain: secretKeychain{}, Timeout: 300 * time.Millisecond,
				Policy: &retry.Policy{Attempts: 3, Base: time.Millisecond}}
			for _, m := range []string{"docker.io=" + tc.mirror, "gcr.io=" + good} {
				if err := r.Mirrors.Set(m); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			mf := &matrixFlags{files: []string{file}}
			start := time.Now()
			err := runPin(context.Background(), &stdout, &stderr, mf, &pinFlags{}, r)
			var ee *ExitError
			if err == nil || !errors.As(err, &ee) || ee.Code != ExitFailure || !strings.Contains(err.Error(), "nothing was written") {
				t.Fatalf("err = %v", err)
			}
			want := strings.ReplaceAll(tc.want, "HOST", tc.mirror)
			e := stderr.String()
			if !strings.Contains(e, want) || strings.Contains(e, "hunter2") || stdout.Len() != 0 {
				t.Errorf("stderr:\n%s\nwant a line with:\n%s", e, want)
			}
			if n := manifests.Load(); n > tc.maxRequests {
				t.Errorf("%d manifest requests, want at most %d", n, tc.maxRequests)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %s", took)
			}
			if readString(t, file) != string(orig) {
				t.Error("the file changed")
			}
		})
	}
}

func TestPinUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-f", realFile, "-f", realFile, "pin"},
		{"-f", realFile, "pin", "--mirror", "docker.io"},
		{"-f", realFile, "pin", "--mirror", "docker.io/x=127.0.0.1:5000"},
		{"-f", realFile, "pin", "extra"},
	} {
		if code, _, errOut := run(args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, errOut)
		}
	}
	code, out, _ := run("pin", "--help")
	if code != ExitOK || !strings.Contains(out, "imagegen pin --check") || !strings.Contains(out, "--mirror") {
		t.Errorf("pin --help: exit %d\n%s", code, out)
	}
}
