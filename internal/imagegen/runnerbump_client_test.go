package imagegen

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// authServer serves the latest release and records each request's
// Authorization header.
func authServer(t *testing.T, body string) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var seen []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"tag_name": "v2.331.0", "body": body})
	}))
	t.Cleanup(s.Close)
	return s, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

// FetchRelease uses the client and the token it is given, and nothing
// from the environment.
func TestFetchReleaseTakesClientAndToken(t *testing.T) {
	t.Setenv("GITHUB_TOKEN", "from-the-environment")
	s, seen := authServer(t, "")
	used := false
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used = true
		return s.Client().Transport.RoundTrip(r)
	})}
	if _, err := FetchRelease(context.Background(), client, s.URL, "given-token", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchRelease(context.Background(), client, s.URL, "", ""); err != nil {
		t.Fatal(err)
	}
	if !used {
		t.Error("FetchRelease did not use the client it was given")
	}
	if got := seen(); len(got) != 2 || got[0] != "Bearer given-token" || got[1] != "" {
		t.Errorf("Authorization headers = %q, want the given token, then none", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The command reads GITHUB_TOKEN (at the edge) and passes it on.
func TestRunnerBumpSendsGitHubToken(t *testing.T) {
	t.Setenv("GITHUB_TOKEN", "tok-123")
	s, seen := authServer(t, "")
	file := filepath.Join(t.TempDir(), "variants.hcl")
	orig, _ := os.ReadFile(realFile)
	os.WriteFile(file, orig, 0o644)
	run("-f", file, "runner-bump", "--dry-run", "--api-url", s.URL)
	if got := seen(); len(got) != 1 || got[0] != "Bearer tok-123" {
		t.Errorf("Authorization headers = %q", got)
	}
}

// Sums are read for the runner architectures of the platform table; others
// in the notes (linux-arm) are passed by.
func TestFetchReleasePlatforms(t *testing.T) {
	notes := "<!-- BEGIN SHA linux-x64 -->" + sum331x64 + "<!-- END SHA linux-x64 -->\n" +
		"<!-- BEGIN SHA linux-arm64 -->" + sum331arm64 + "<!-- END SHA linux-arm64 -->\n" +
		"<!-- BEGIN SHA linux-arm -->" + strings.Repeat("d", 64) + "<!-- END SHA linux-arm -->\n" +
		"<!-- BEGIN SHA win-x64 -->" + strings.Repeat("e", 64) + "<!-- END SHA win-x64 -->\n"
	s, _ := authServer(t, notes)
	rel, err := FetchRelease(context.Background(), s.Client(), s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rel.SHA256) != 2 || rel.SHA256["linux/amd64"] != sum331x64 || rel.SHA256["linux/arm64"] != sum331arm64 {
		t.Errorf("SHA256 = %v", rel.SHA256)
	}
}
