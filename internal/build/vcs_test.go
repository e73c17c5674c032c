package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gitRepo makes a git repository with one commit and the given origin,
// and returns its folder and commit.
func gitRepo(t *testing.T, origin string) (dir, commit string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed: %v", err)
	}
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
	if origin != "" {
		git("remote", "add", "origin", origin)
	}
	return dir, git("rev-parse", "HEAD")
}

func noEnv(string) string { return "" }

// The provenance names the repository without its user-info (a token in
// an origin URL never reaches an attestation) and the commit; outside a
// repository nothing; in GitHub Actions the repository's address.
func TestGitVCS(t *testing.T) {
	ctx := context.Background()
	for origin, want := range map[string]string{
		"https://x-access-token:ghp_s3cr3tT0ken@github.example/o/r.git":    "https://github.example/o/r.git",
		"https://ghp_s3cr3tT0ken@github.example/o/r.git?x=ghp_s3cr3tT0ken": "https://github.example/o/r.git",
		"ssh://git@github.example:22/o/r.git":                              "ssh://github.example:22/o/r.git",
		"git@github.example:o/r.git":                                       "github.example:o/r.git",
		"":                                                                 "",
	} {
		if origin != "" && !strings.HasPrefix(origin, "ssh:") && !strings.HasPrefix(origin, "git@") {
			defer func() { // not git's URL forms, but no token leaks from them either
				for _, s := range []string{origin, strings.TrimPrefix(origin, "https://"), "https://x:ghp_s3cr3tT0ken@/p"} {
					if got := StripUserInfo(s); strings.Contains(got, "s3cr3t") {
						t.Errorf("StripUserInfo(%q) = %q", s, got)
					}
				}
			}()
		}
		dir, commit := gitRepo(t, origin)
		got := GitVCS(ctx, filepath.Join(dir), noEnv)
		if got.Source != want || got.Revision != commit {
			t.Errorf("origin %q: %+v, want source %q, revision %s", origin, got, want, commit)
		}
	}
	if got := GitVCS(ctx, t.TempDir(), noEnv); got != (VCS{}) {
		t.Errorf("outside a repository: %+v", got)
	}
	dir, commit := gitRepo(t, "https://u:p@elsewhere.example/fork.git")
	actions := map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "runpod-workers/worker-github_runner"}
	got := GitVCS(ctx, dir, func(k string) string { return actions[k] })
	if got.Source != "https://github.com/runpod-workers/worker-github_runner" || got.Revision != commit {
		t.Errorf("in Actions: %+v", got)
	}
	off := func(k string) string { return map[string]string{"BUILDX_GIT_INFO": "false"}[k] }
	if got := GitVCS(ctx, dir, off); got != (VCS{}) {
		t.Errorf("BUILDX_GIT_INFO=false: %+v", got)
	}
}
