package registry

import (
	"context"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// basicAuthRegistry is an in-memory registry that asks for basic
// credentials and records the ones it gets.
func basicAuthRegistry(t *testing.T) (host string, seen func() []string) {
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	var mu sync.Mutex
	var got []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		if a == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, a)
		mu.Unlock()
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://"), func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
}

func writeDockerConfig(t *testing.T, host, user, pass string) string {
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	cfg := `{"auths":{"` + host + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A Client with a Keychain takes its credentials from it, whatever
// DOCKER_CONFIG and HOME say: the Docker config kept by the Kaniko builder
// is read without pointing the process's environment at it.
func TestClientUsesItsKeychain(t *testing.T) {
	host, seen := basicAuthRegistry(t)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", writeDockerConfig(t, host, "env-user", "env-pass"))
	kept := writeDockerConfig(t, host, "kept-user", "kept-pass")

	ref, _ := name.ParseReference(host + "/team/worker:dev")
	img, _ := random.Image(64, 1)
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "x", Password: "y"})); err != nil {
		t.Fatal(err)
	}
	c := &Client{Timeout: 10 * time.Second, Keychain: ConfigKeychain(kept)}
	if _, err := c.Resolve(context.Background(), ref.String()); err != nil {
		t.Fatal(err)
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("kept-user:kept-pass"))
	got := seen()
	if len(got) == 0 || got[len(got)-1] != want {
		t.Errorf("Authorization = %q, want the kept config's %q", got, want)
	}
	if err := c.CheckWritable(context.Background(), []string{ref.String()}); err != nil {
		t.Fatal(err)
	}
	if last := seen(); last[len(last)-1] != want {
		t.Errorf("CheckWritable sent %q, want %q", last[len(last)-1], want)
	}
}

// A missing or empty config means anonymous access, not an error.
func TestConfigKeychainWithoutCredentials(t *testing.T) {
	repo, _ := name.NewRepository("registry.example/team/worker")
	for _, dir := range []string{t.TempDir(), writeDockerConfig(t, "other.example", "u", "p")} {
		a, err := ConfigKeychain(dir).Resolve(repo)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := a.Authorization()
		if err != nil || cfg.Username != "" || cfg.Password != "" || cfg.Auth != "" {
			t.Errorf("%s: authorization = %+v, %v; want anonymous", dir, cfg, err)
		}
	}
}
