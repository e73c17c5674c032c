package release

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	sumOld = "70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613"
	sumNew = "af4b794c1bc41d73d40535e3fe092a39f9679cd8d965954c2aca25a05ca41d32"
)

// fakeGo puts a go command first in PATH that answers
// `go run ./cmd/imagegen print` with the print.json of its folder (what the
// real imagegen prints for that checkout's variants.hcl) and refuses
// anything else.
func fakeGo(t *testing.T) []string {
	bin := t.TempDir()
	script := "#!/bin/sh\nif [ \"$*\" = \"run ./cmd/imagegen print\" ]; then exec cat print.json; fi\necho \"fake go: unexpected $*\" >&2\nexit 9\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
}

func printJSON(version, sum string) string { return printJSONBase(version, sum, "ubuntu:24.04") }

// printJSONBase is printJSON with the cpu variant's base as given (a pinned
// one after a merged base-pin).
func printJSONBase(version, sum, base string) string {
	v := fmt.Sprintf(`{"name": "%%s", "base": "%%s", "runner": {"version": %q, "url": "u", "sha256": {"linux/amd64": %q}}, "golang": {"image": "golang:1.26.8"}}`, version, sum)
	return `{"variants": [` + fmt.Sprintf(v, "cpu", base) + ", " + fmt.Sprintf(v, "gpu", "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04") + "]}\n"
}

// repo is a git repository with a bare origin; commit writes print.json
// (the matrix's runner) and other files.
type repo struct {
	t    *testing.T
	env  []string
	path string
}

func newRepo(t *testing.T) *repo {
	r := &repo{t: t, path: t.TempDir(), env: append(fakeGo(t),
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")}
	origin := t.TempDir()
	r.git("init", "-q", "--bare", origin)
	r.git("init", "-q", "-b", "main")
	r.git("remote", "add", "origin", origin)
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	out, errOut, code := runIn(r.t, r.path, r.env, "", "git", args...)
	if code != 0 {
		r.t.Fatalf("git %v: %s%s", args, out, errOut)
	}
	return strings.TrimSpace(out)
}

func (r *repo) commit(runnerVersion, sum, msg string) {
	r.t.Helper()
	r.commitPrint(printJSON(runnerVersion, sum), msg)
}

// commitPrint commits print.json as given.
func (r *repo) commitPrint(print, msg string) {
	r.t.Helper()
	os.WriteFile(filepath.Join(r.path, "print.json"), []byte(print), 0o644)
	os.WriteFile(filepath.Join(r.path, "notes.txt"), []byte(msg), 0o644)
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
}

// publish runs `release-plan.sh publish` in the repository and returns
// what it appended to GITHUB_ENV and GITHUB_OUTPUT.
func (r *repo) publish(kind, ref, pre string) (env, output, stderr string, code int) {
	r.t.Helper()
	files := r.t.TempDir()
	envFile, outFile := filepath.Join(files, "env"), filepath.Join(files, "out")
	_, stderr, code = runIn(r.t, r.path, append(r.env, "GITHUB_ENV="+envFile, "GITHUB_OUTPUT="+outFile), "", planScript, "publish", kind, ref, pre)
	e, _ := os.ReadFile(envFile)
	o, _ := os.ReadFile(outFile)
	return string(e), string(o), stderr, code
}

func TestPublishDev(t *testing.T) {
	r := newRepo(t)
	r.commit("2.337.0", sumOld, "one")
	r.git("push", "-q", "origin", "main")
	env, out, errOut, code := r.publish("dev", r.git("rev-parse", "HEAD"), "false")
	if code != 0 || env != "RELEASE=dev\nLATEST=false\n" || out != "publish=true\nsrc=.\n" {
		t.Errorf("dev at main's tip: exit %d, env %q, output %q, %s", code, env, out, errOut)
	}
	// CI of an older commit finished after main moved on: that commit does
	// not take dev-* back.
	r.git("checkout", "-q", "-b", "old")
	r.git("checkout", "-q", "main")
	r.commit("2.337.0", sumOld, "two")
	r.git("push", "-q", "origin", "main")
	r.git("checkout", "-q", "old")
	env, out, errOut, code = r.publish("dev", "x", "false")
	if code != 0 || env != "" || out != "publish=false\n" || !strings.Contains(errOut, "main moved on") {
		t.Errorf("dev behind main: exit %d, env %q, output %q, %s", code, env, out, errOut)
	}
}

// A release computes LATEST from the repository's tags at the time it
// runs (inside the concurrency group), so a release that waited for a
// newer one does not take latest-* back.
func TestPublishRelease(t *testing.T) {
	r := newRepo(t)
	r.commit("2.337.0", sumOld, "one")
	r.git("tag", "v1.0.0")
	r.git("tag", "v0.9.0", "HEAD")
	for _, c := range []struct{ tag, pre, latest string }{
		{"v1.0.0", "false", "true"}, {"v0.9.0", "false", "false"}, {"v1.1.0-rc.1", "true", "false"},
	} {
		if c.tag == "v1.1.0-rc.1" {
			r.git("tag", c.tag)
		}
		env, out, errOut, code := r.publish("release", c.tag, c.pre)
		if code != 0 || env != "RELEASE="+c.tag+"\nLATEST="+c.latest+"\n" || out != "publish=true\nsrc=.\n" {
			t.Errorf("release %s: exit %d, env %q, output %q, %s", c.tag, code, env, out, errOut)
		}
	}
	r.git("tag", "v1.0.1")
	if env, _, errOut, _ := r.publish("release", "v1.0.0", "false"); !strings.Contains(env, "LATEST=false") {
		t.Errorf("v1.0.0 published after v1.0.1 existed: %q %s", env, errOut)
	}
	if _, _, errOut, code := r.publish("release", "main", "false"); code != 2 || !strings.Contains(errOut, "not vX.Y.Z") {
		t.Errorf("release of a non-version tag: exit %d %s", code, errOut)
	}
}

// A rebuild builds the newest release from its tag with main's runner.
func TestPublishRebuild(t *testing.T) {
	r := newRepo(t)
	r.commit("2.337.0", sumOld, "release")
	r.git("tag", "v1.0.0")
	r.commit("2.337.0", sumOld, "feature")
	r.git("tag", "v1.1.0-rc.1")
	r.commit("2.338.0", sumNew, "runner bump")
	env, out, errOut, code := r.publish("rebuild", "HEAD", "false")
	wantEnv := "RELEASE=v1.0.0\nLATEST=true\nRUNNER_VERSION=2.338.0\nRUNNER_SHA256={\"linux/amd64\":\"" + sumNew + "\"}\n"
	if code != 0 || env != wantEnv || out != "publish=true\nsrc=release-src\n" {
		t.Fatalf("exit %d, env %q, output %q, %s", code, env, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(r.path, "release-src", "notes.txt")); err != nil || string(b) != "release" {
		t.Errorf("release-src holds %q (%v), want the v1.0.0 checkout", b, err)
	}

	// main's runner is not newer than the release's: the release keeps
	// its own (no downgrade, nothing overridden).
	os.RemoveAll(filepath.Join(r.path, "release-src"))
	r.git("worktree", "prune")
	r.commit("2.337.0", sumOld, "runner reverted")
	env, out, errOut, code = r.publish("rebuild", "HEAD", "false")
	if code != 0 || env != "RELEASE=v1.0.0\nLATEST=true\n" || out != "publish=true\nsrc=release-src\n" || !strings.Contains(errOut, "its own runner 2.337.0") {
		t.Errorf("main's runner not newer: exit %d, env %q, output %q, %s", code, env, out, errOut)
	}
}

// A merged commit that moved the runner (version or sums) triggers a
// rebuild; others do not.
func TestRunnerMoved(t *testing.T) {
	r := newRepo(t)
	r.commit("2.337.0", sumOld, "first")
	moved := func(want string) {
		t.Helper()
		out, errOut, code := runIn(t, r.path, r.env, "", planScript, "runner-moved")
		if code != 0 || out != "moved="+want+"\n" {
			t.Errorf("exit %d, %q, %s; want moved=%s", code, out, errOut, want)
		}
		if wt := r.git("worktree", "list"); strings.Count(wt, "\n") != 0 {
			t.Errorf("worktrees left behind:\n%s", wt)
		}
	}
	moved("true") // no parent: nothing to compare with
	r.commit("2.337.0", sumOld, "feature")
	moved("false")
	r.commit("2.338.0", sumNew, "runner bump")
	moved("true")
	r.commit("2.338.0", sumOld, "sum fixed")
	moved("true")
	// A merged base-pin: the builds pull other bytes.
	pinned := "ubuntu:24.04@sha256:" + strings.Repeat("1", 64)
	r.commitPrint(printJSONBase("2.338.0", sumOld, pinned), "base-pin")
	moved("true")
	r.commitPrint(printJSONBase("2.338.0", sumOld, pinned), "docs")
	moved("false")
}

func TestPublishRebuildWithoutARelease(t *testing.T) {
	r := newRepo(t)
	r.commit("2.337.0", sumOld, "one")
	r.git("tag", "v0.1.0-rc.1")
	env, out, errOut, code := r.publish("rebuild", "HEAD", "false")
	if code != 0 || env != "" || out != "publish=false\n" || !strings.Contains(errOut, "no vX.Y.Z release") {
		t.Errorf("exit %d, env %q, output %q, %s", code, env, out, errOut)
	}
}

// A matrix whose runner cannot be read fails the run (no rebuild with a
// half-known runner).
func TestPublishRebuildFailsOnABrokenMatrix(t *testing.T) {
	r := newRepo(t)
	r.commit("2.337.0", sumOld, "release")
	r.git("tag", "v1.0.0")
	os.WriteFile(filepath.Join(r.path, "print.json"), []byte(`{"variants": [{"runner": {"version": "2.338.0"}}, {"runner": {"version": "2.339.0"}}]}`), 0o644)
	r.git("commit", "-q", "-am", "broken")
	env, out, errOut, code := r.publish("rebuild", "HEAD", "false")
	if code == 0 || env != "" || strings.Contains(out, "publish=true") || !strings.Contains(errOut, "one runner version") {
		t.Errorf("exit %d, env %q, output %q, %s", code, env, out, errOut)
	}
	if _, errOut, code := runIn(t, r.path, r.env, "", planScript, "runner-moved"); code == 0 || !strings.Contains(errOut, "one runner version") {
		t.Errorf("runner-moved: exit %d, %s", code, errOut)
	}
	if wt := r.git("worktree", "list"); strings.Count(wt, "\n") != 0 {
		t.Errorf("runner-moved left its worktree behind:\n%s", wt)
	}
}
