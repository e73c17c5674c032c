package registry

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestCheckWritable(t *testing.T) {
	s := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer s.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	c := &Client{Timeout: 10 * time.Second}
	if err := c.CheckWritable(context.Background(), []string{host + "/a/b:dev", host + "/a/b:latest", host + "/c"}); err != nil {
		t.Fatalf("writable registry: %v", err)
	}
	gone := httptest.NewServer(nil)
	goneHost := strings.TrimPrefix(gone.URL, "http://")
	gone.Close()
	err := c.CheckWritable(context.Background(), []string{host + "/a/b:dev", goneHost + "/x/y:dev"})
	if err == nil || !strings.Contains(err.Error(), "repository "+goneHost+"/x/y is not writable (or not reachable)") || strings.Contains(err.Error(), host+"/a/b") {
		t.Fatalf("err = %v", err)
	}
}

func TestFloating(t *testing.T) {
	for tag, want := range map[string]bool{"latest": true, "latest-gpu": true, "v1.0.0-gpu": false, "dev-cpu": false, "latestgpu": false} {
		if Floating(tag) != want {
			t.Errorf("Floating(%q) = %v", tag, !want)
		}
	}
}

// Once the run is cancelled, putting tags back gets RollbackGrace at most,
// even when the registry hangs (CI sends SIGKILL ~7.5 s after SIGINT).
func TestRollbackAfterCancelIsBounded(t *testing.T) {
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var hang atomic.Bool
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tagWrite := (r.Method == http.MethodPut || r.Method == http.MethodDelete) && strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "sha256:")
		if tagWrite && (hang.Load() || strings.HasSuffix(r.URL.Path, "/latest-cpu")) {
			hang.Store(true)
			cancel()
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer s.Close()
	repo := strings.TrimPrefix(s.URL, "http://") + "/r/w"
	img, _ := random.Image(64, 1)
	d, _ := img.Digest()
	ref, _ := name.NewDigest(repo + "@" + d.String())
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	c := &Client{Timeout: time.Minute}
	start := time.Now()
	res, err := c.TagAll(ctx, []Target{{Image: repo, Digest: d.String(), Tags: []string{repo + ":dev-cpu", repo + ":latest-cpu"}}})
	if took := time.Since(start); took > RollbackGrace+2*time.Second {
		t.Errorf("TagAll returned %s after the cancel", took)
	}
	if err == nil || res[0][0].State != TagNotRestored || res[0][1].State != TagNotWritten {
		t.Errorf("%+v, %v", res, err)
	}
}
