package registry

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// An image a backend built locally is pushed by digest (no tag appears),
// or written as an OCI layout that replaces what the folder held.
func TestPublish(t *testing.T) {
	s := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer s.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	img, _ := random.Image(64, 1)
	want, _ := img.Digest()
	c := &Client{Timeout: 10 * time.Second}
	d, err := c.PushByDigest(context.Background(), host+"/runpod/worker", img)
	if err != nil || d != want.String() {
		t.Fatalf("PushByDigest = %s, %v; want %s", d, err, want)
	}
	if got, err := c.Resolve(context.Background(), host+"/runpod/worker@"+d); err != nil || got != d {
		t.Errorf("pushed image: %s %v", got, err)
	}
	if _, err := c.Resolve(context.Background(), host+"/runpod/worker:latest"); err == nil {
		t.Error("a tag was written")
	}

	dir := filepath.Join(t.TempDir(), "cpu")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "stale"), []byte("x"), 0o644)
	if err := WriteLayout(dir, img, host+"/runpod/worker:dev-cpu"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale")); err == nil {
		t.Error("the folder's old content was kept")
	}
	p, _ := layout.FromPath(dir)
	idx, _ := p.ImageIndex()
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 || m.Manifests[0].Digest != want || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != host+"/runpod/worker:dev-cpu" {
		t.Fatalf("layout: %+v %v", m, err)
	}
}
