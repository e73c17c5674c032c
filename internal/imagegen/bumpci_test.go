package imagegen

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenTests are the tests whose expectations follow the runner release
// in variants.hcl; a bump PR must pass them with no hand edits.
const goldenTests = "^(TestGoldenDockerfiles|TestDockerfileContract|TestPrintGolden|TestRunnerBumpGoldenDiff|TestRunnerBumpRefusesMissingChecksum)$"

// A runner-bump PR passes CI unattended: bump a copy of the tree against a
// fake release, render as the workflow does, and run the golden tests and
// render --check there.
func TestBumpedTreePassesGoldens(t *testing.T) {
	if os.Getenv("IMAGEGEN_BUMPED_TREE") != "" {
		return // already inside the copy: no recursion
	}
	root := copyTree(t, "../..")
	api := fakeReleases(t, true)
	file := filepath.Join(root, "variants.hcl")
	if code, out, e := run("-f", file, "runner-bump", "2.339.0", "--api-url", api.URL); code != 0 || !strings.Contains(out, "-> 2.339.0") {
		t.Fatalf("bump: exit %d: %s%s", code, out, e)
	}
	// base-pin's pull request too: pins written into the same tree.
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // anonymous
	host, _ := newMirror(t)
	if code, out, e := run("-f", file, "pin", "--mirror", "docker.io="+host, "--mirror", "gcr.io="+host); code != 0 || !strings.Contains(out, "pinned to sha256:") {
		t.Fatalf("pin: exit %d: %s%s", code, out, e)
	}
	out := filepath.Join(root, "dockerfiles")
	if code, _, e := run("-f", file, "render", "--out", out, "--no-lint"); code != 0 {
		t.Fatalf("render: exit %d: %s", code, e)
	}
	if code, _, e := run("-f", file, "render", "--out", out, "--check"); code != 0 {
		t.Fatalf("render --check on the bumped tree: exit %d: %s", code, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	args := append(append([]string{"test"}, raceFlag...), "-count=1", "-run", goldenTests, "./internal/render", "./internal/imagegen")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "IMAGEGEN_BUMPED_TREE=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("golden tests on the bumped tree: %v\n%s", err, tail(b, 4000))
	}
}

// copyTree copies the module at src (sources only: no .git, no build
// output, no binaries) into a temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if rel == ".git" || rel == "out" || (rel != "." && strings.HasPrefix(d.Name(), ".") && rel != ".runpod" && rel != ".github") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() > 4<<20 {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
