package buildkit

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/build/attesttest"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/registry"
)

const vcsToken = "ghp_F1s3cr3tT0kenInTheOriginURL"

// tokenRepo is a git repository with one commit whose origin URL carries
// a user and a token; it returns its folder and commit.
func tokenRepo(t *testing.T) (dir, commit string) {
	t.Helper()
	dir = t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	if err := os.WriteFile(filepath.Join(dir, "variants.hcl"), []byte("# test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", ".")
	git("commit", "-q", "-m", "test")
	git("remote", "add", "origin", "https://x-access-token:"+vcsToken+"@git.example/team/worker.git")
	return dir, git("rev-parse", "HEAD")
}

// A provenance built from a git checkout names its source (the origin URL
// without user-info) and its commit, as buildx's does; the token in the
// origin URL appears nowhere in the pushed attestation manifest.
func TestRealBuildProvenanceVCS(t *testing.T) {
	env := devenv(t)
	dir, commit := tokenRepo(t)
	b, ctx := openBuilder(t, env)
	req := attestedRequest(t, env, "vcs", build.PushByDigest(), false, "type=provenance,mode=max")
	req.VCS = build.GitVCS(ctx, dir, func(string) string { return "" })
	results, err := build.Run(ctx, b, []*build.Request{req}, build.Options{Tagger: &registry.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(req.Variant.Image)
	idx, err := remote.Index(repo.Digest(results[0].Digest))
	if err != nil {
		t.Fatal(err)
	}
	image, st := provenanceOf(t, idx)
	checkProvenance(t, image, st)
	var pred struct {
		RunDetails struct {
			Metadata struct {
				BuildKit struct {
					VCS map[string]string `json:"vcs"`
				} `json:"buildkit_metadata"`
			} `json:"metadata"`
		} `json:"runDetails"`
	}
	if err := json.Unmarshal(st.Predicate, &pred); err != nil {
		t.Fatal(err)
	}
	vcs := pred.RunDetails.Metadata.BuildKit.VCS
	if vcs["source"] != "https://git.example/team/worker.git" || vcs["revision"] != commit {
		t.Errorf("provenance VCS %v, want source https://git.example/team/worker.git, revision %s", vcs, commit)
	}
	if where := findInAttestations(t, idx, vcsToken); where != "" {
		t.Errorf("the origin URL's token is in the pushed attestation: %s", where)
	}
}

// findInAttestations says where s occurs in the index's attestation
// manifests (manifest, config, layers), "" when nowhere.
func findInAttestations(t *testing.T, idx v1.ImageIndex, s string) string {
	t.Helper()
	as, err := attesttest.Read(idx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if where := a.Contains(s); where != "" {
			return where
		}
	}
	return ""
}
