package pin

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/retry"
)

// registryWith serves a registry holding repo:tag, wrapped by wrap; it
// returns the host and the image's digest.
func registryWith(t *testing.T, repoTag string, wrap func(http.Handler) http.Handler) (string, string) {
	t.Helper()
	s := httptest.NewServer(wrap(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))))
	t.Cleanup(func() { s.CloseClientConnections(); s.Close() })
	host := strings.TrimPrefix(s.URL, "http://")
	img, _ := random.Image(64, 1)
	ref, err := name.NewTag(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return host, d.String()
}

func resolverFor(t *testing.T, host string) *Resolver {
	t.Helper()
	r := &Resolver{Mirrors: Mirrors{}, Keychain: authn.NewMultiKeychain(), Timeout: 5 * time.Second,
		Policy: &retry.Policy{Attempts: 4, Base: time.Millisecond}}
	if err := r.Mirrors.Set("docker.io=" + host); err != nil {
		t.Fatal(err)
	}
	return r
}

// A registry answering HEAD without Docker-Content-Digest is asked with
// GET, as crane does (finding 5).
func TestDigestFallsBackToGet(t *testing.T) {
	var armed atomic.Bool
	host, want := registryWith(t, "library/ubuntu:24.04", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if armed.Load() && r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") {
				w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
				w.Header().Set("Content-Length", "100")
				w.WriteHeader(http.StatusOK)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	armed.Store(true)
	got, err := resolverFor(t, host).Digest(context.Background(), "ubuntu:24.04")
	if err != nil || got != want {
		t.Fatalf("Digest = %s, %v; want %s", got, err, want)
	}
}

type brokenKeychain struct{ calls *atomic.Int32 }

func (k brokenKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	k.calls.Add(1)
	return nil, errors.New(`error getting credentials - err: exec: "docker-credential-gone": executable file not found in $PATH`)
}

// A keychain error is no registry failure: not retried, worded as such.
func TestDigestKeychainError(t *testing.T) {
	var manifests atomic.Int32
	host, _ := registryWith(t, "library/ubuntu:24.04", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				manifests.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	manifests.Store(0)
	r := resolverFor(t, host)
	var calls atomic.Int32
	r.Keychain = brokenKeychain{&calls}
	_, err := r.Digest(context.Background(), "ubuntu:24.04")
	want := "ubuntu:24.04: reading Docker credentials for " + host + ": "
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "not reachable") || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("err = %v, want it to start %q", err, want)
	}
	if calls.Load() != 1 || manifests.Load() != 0 {
		t.Errorf("%d keychain calls, %d manifest requests; want 1 and 0", calls.Load(), manifests.Load())
	}
}

// One hung connection does not eat the whole timeout: each attempt has
// its share, and the next attempt succeeds (finding 5).
func TestDigestPerAttemptTimeout(t *testing.T) {
	var armed, first atomic.Bool
	host, want := registryWith(t, "library/ubuntu:24.04", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if armed.Load() && strings.Contains(r.URL.Path, "/manifests/") && first.CompareAndSwap(false, true) {
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	armed.Store(true)
	r := resolverFor(t, host)
	r.Timeout = 2 * time.Second
	start := time.Now()
	got, err := r.Digest(context.Background(), "ubuntu:24.04")
	if err != nil || got != want {
		t.Fatalf("Digest = %s, %v; want %s after a retry", got, err, want)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("took %s", took)
	}
}

func TestDescribeOneAttempt(t *testing.T) {
	at, _ := name.ParseReference("ubuntu:24.04")
	err := describe("ubuntu:24.04", at, &retry.Error{Reason: retry.Cancelled, Attempts: 1, Cause: errors.New("interrupted"), Err: errors.New("boom")}, time.Second)
	if !strings.Contains(err.Error(), "after 1 attempt)") {
		t.Errorf("%v", err)
	}
	err = describe("ubuntu:24.04", at, &retry.Error{Reason: retry.Exhausted, Attempts: 1, Err: errors.New("boom")}, time.Second)
	if !strings.Contains(err.Error(), "(1 attempt)") {
		t.Errorf("%v", err)
	}
}

// --mirror values may hold credentials: errors never echo them, and
// user-info is refused outright (finding 6); hosts are case-insensitive
// (finding 7).
func TestMirrorErrorsAndCase(t *testing.T) {
	for _, bad := range []string{
		"docker.io=user:S3cr3t@127.0.0.1:5000",
		"user:S3cr3t@docker.io=127.0.0.1:5000",
		"S3cr3t",
		"docker.io=S3cr3t!!",
		"S3cr3t!!=127.0.0.1:5000",
	} {
		err := Mirrors{}.Set(bad)
		if err == nil || strings.Contains(err.Error(), "S3cr3t") {
			t.Errorf("Set(%q) = %v: want an error that does not echo the value", bad, err)
		}
		if strings.Contains(bad, "@") && (err == nil || !strings.Contains(err.Error(), "credentials")) {
			t.Errorf("Set(%q) = %v: want user-info refused, credentials named", bad, err)
		}
	}
	m := Mirrors{}
	if err := m.Set("DOCKER.IO=127.0.0.1:5000"); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("docker.io=127.0.0.1:6000"); err == nil {
		t.Error("a second mirror of docker.io, spelt in lower case, accepted")
	}
	for _, ref := range []string{"DOCKER.IO/library/ubuntu:24.04", "Docker.IO/library/ubuntu:24.04", "ubuntu:24.04"} {
		got, err := m.lookupRef(ref)
		if err != nil || got.String() != "127.0.0.1:5000/library/ubuntu:24.04" {
			t.Errorf("%s: looked up as %v (%v)", ref, got, err)
		}
	}
}
