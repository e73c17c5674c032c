package kaniko

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/render"
)

// New leaves the process's environment alone: the Docker config it keeps
// in Kaniko's folder reaches the executor through the child's environment
// and imagegen through the builder's keychain.
func TestNewLeavesTheEnvironmentAlone(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "docker")
	os.MkdirAll(src, 0o700)
	cfg := `{"auths":{"registry.example":{"auth":"dTpw"}}}` // u:p
	os.WriteFile(filepath.Join(src, "config.json"), []byte(cfg), 0o600)
	t.Setenv("DOCKER_CONFIG", src)

	exe := filepath.Join(dir, "executor")
	seen := filepath.Join(dir, "seen")
	os.WriteFile(exe, []byte("#!/bin/sh\necho \"$DOCKER_CONFIG\" > "+seen+"\nexit 3\n"), 0o755)
	work := filepath.Join(dir, "work")
	b, err := New(Options{Executor: exe, Force: true, WorkDir: work})
	if err != nil {
		t.Fatal(err)
	}
	if got := os.Getenv("DOCKER_CONFIG"); got != src {
		t.Errorf("after New, DOCKER_CONFIG = %q, want %q (unchanged)", got, src)
	}
	kept := filepath.Join(work, "imagegen", ".docker")
	if b, _ := os.ReadFile(filepath.Join(kept, "config.json")); string(b) != cfg {
		t.Errorf("kept config = %q", b)
	}

	v := matrix(t).Find("cpu")
	plan, _ := render.Variant(v)
	b.Build(context.Background(), &build.Request{Variant: v, Dockerfile: plan.Dockerfile, ContextDir: dir, Output: build.PushTags()})
	if got, _ := os.ReadFile(seen); strings.TrimSpace(string(got)) != kept {
		t.Errorf("the executor saw DOCKER_CONFIG=%q, want %q", got, kept)
	}

	// The keychain reads the kept copy, even once the original is gone
	// (Kaniko deletes it with the rest of the file system).
	os.RemoveAll(src)
	repo, _ := name.NewRepository("registry.example/team/worker")
	a, err := b.Keychain().Resolve(repo)
	if err != nil {
		t.Fatal(err)
	}
	if ac, err := a.Authorization(); err != nil || ac.Username != "u" || ac.Password != "p" {
		t.Errorf("keychain gave %+v, %v; want u:p", ac, err)
	}
}
