package imagegen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/runpod-workers/worker-github_runner/internal/golden"
)

const realFile = "../../variants.hcl"

// TestMain clears the variables variants.hcl declares, so the shell running
// the tests cannot change what they see.
func TestMain(m *testing.M) {
	src, err := os.ReadFile(realFile)
	if err != nil {
		panic(err)
	}
	for _, sm := range regexp.MustCompile(`(?m)^variable "([A-Z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
		os.Unsetenv(sm[1])
	}
	os.Exit(m.Run())
}

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

func TestPrintGolden(t *testing.T) {
	for _, tc := range []struct{ name, release string }{{"print-dev", "dev"}, {"print-release", "v1.0.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run("-f", realFile, "--var", "RELEASE="+tc.release, "print")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			golden.Check(t, tc.name+".json", []byte(out))
		})
	}
}

func TestPrintTags(t *testing.T) {
	_, out, _ := run("-f", realFile, "print")
	for _, want := range []string{`:dev-gpu"`, `:dev-cpu"`} {
		if !strings.Contains(out, want) {
			t.Errorf("print lacks %s", want)
		}
	}
	if strings.Contains(out, "latest-") {
		t.Error("dev build has latest tags")
	}
	t.Setenv("RELEASE", "v1.0.0")
	_, out, _ = run("-f", realFile, "print")
	for _, want := range []string{":v1.0.0-gpu", ":latest-gpu", ":v1.0.0-cpu", ":latest-cpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("release print lacks %s", want)
		}
	}
}

func TestPrintSelect(t *testing.T) {
	code, out, _ := run("-f", realFile, "print", "g*")
	if code != 0 || !strings.Contains(out, `"name": "gpu"`) || strings.Contains(out, `"name": "cpu"`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	code, _, errOut := run("-f", realFile, "print", "tpu")
	if code != ExitFailure || !strings.Contains(errOut, `no variant matches "tpu"; the matrix has: cpu, gpu`) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestList(t *testing.T) {
	code, out, _ := run("-f", realFile, "list")
	want := "VARIANT  FLAVOUR            PLATFORMS    BASE                                          TAGS\n" +
		"cpu      cpu                linux/amd64  ubuntu:24.04                                  docker.io/runpod/worker-github_runner:dev-cpu\n" +
		"gpu      gpu (CUDA 12.6.3)  linux/amd64  nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04  docker.io/runpod/worker-github_runner:dev-gpu\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--bogus"}, {"print", "--bogus"}, {"frobnicate"}, {"render", "--out"}} {
		code, _, errOut := run(args...)
		if code != ExitUsage || !strings.Contains(errOut, "imagegen: ") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, c := range []string{"print", "list", "render"} {
		code, out, _ := run(c, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("%s --help: exit %d, no examples:\n%s", c, code, out)
		}
	}
}

func TestBrokenFileWritesNothing(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "variants.hcl")
	src, _ := os.ReadFile(realFile)
	bad := strings.Replace(string(src), `cuda     = CUDA_VERSION`, `cuda     = "12.x"`, 1)
	bad = strings.Replace(bad, `tags     = ["${RELEASE}-cpu"`, `tags     = ["-${RELEASE}-cpu"`, 1)
	if err := os.WriteFile(broken, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	code, _, errOut := run("-f", broken, "render", "--out", out)
	if code != ExitFailure {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, re := range []string{`variants\.hcl:\d+:\d+: error: Malformed CUDA version`, `variants\.hcl:\d+:\d+: error: Invalid tag`, `\n\s+\d+ \|\s+cuda\s+= "12.x"\n\s+\|\s+\^+`, `2 error\(s\); nothing was done`} {
		if !regexp.MustCompile(re).MatchString(errOut) {
			t.Errorf("stderr lacks %s:\n%s", re, errOut)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output folder was created: %v", err)
	}
}

func TestRenderAndCheck(t *testing.T) {
	out := t.TempDir()
	if code, _, e := run("-f", realFile, "render", "--out", out); code != 0 {
		t.Fatalf("render: %d %s", code, e)
	}
	if code, o, e := run("-f", realFile, "render", "--out", out, "--check"); code != 0 || !strings.Contains(o, "2 Dockerfile(s)") {
		t.Fatalf("check after render: %d %s %s", code, o, e)
	}
	// A second render changes nothing.
	if _, o, _ := run("-f", realFile, "render", "--out", out); strings.Count(o, "unchanged") != 2 {
		t.Fatalf("second render: %s", o)
	}
	// A variable that changes the output makes the files stale.
	code, _, e := run("-f", realFile, "--var", "CUDA_VERSION=12.8.1", "render", "--out", out, "--check")
	if code != ExitFailure || !strings.Contains(e, "gpu.Dockerfile is out of date (first difference at line") {
		t.Fatalf("stale check: %d %s", code, e)
	}
	// A generated file of a vanished variant is reported, then removed.
	stale := filepath.Join(out, "old.Dockerfile")
	os.WriteFile(stale, []byte("# Generated by imagegen from variants.hcl\nFROM x\n"), 0o644)
	mine := filepath.Join(out, "mine.Dockerfile")
	os.WriteFile(mine, []byte("FROM x\n"), 0o644)
	if code, _, e := run("-f", realFile, "render", "--out", out, "--check"); code != ExitFailure || !strings.Contains(e, "old.Dockerfile belongs to no variant") {
		t.Fatalf("stale file: %d %s", code, e)
	}
	if code, _, _ := run("-f", realFile, "render", "--out", out); code != 0 {
		t.Fatal("render failed")
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("stale generated file kept")
	}
	if _, err := os.Stat(mine); err != nil {
		t.Error("a file imagegen did not write was removed")
	}
	// Missing file.
	os.Remove(filepath.Join(out, "cpu.Dockerfile"))
	if code, _, e := run("-f", realFile, "render", "--out", out, "--check"); code != ExitFailure || !strings.Contains(e, "cpu.Dockerfile is missing") {
		t.Fatalf("missing: %d %s", code, e)
	}
}

// The committed dockerfiles/ must match variants.hcl: the same check CI runs.
func TestCommittedDockerfilesUpToDate(t *testing.T) {
	code, o, e := run("-f", realFile, "render", "--out", "../../"+DefaultDockerfileDir, "--check")
	if code != 0 {
		t.Fatalf("%s%s(run: go run ./cmd/imagegen render)", o, e)
	}
}

// README's "add a CUDA 12.8.1 variant" example must work as printed.
func TestReadmeCUDAExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- cuda-example -->\\s*```hcl\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no <!-- cuda-example --> hcl block")
	}
	dir := t.TempDir()
	extra := filepath.Join(dir, "cuda128.hcl")
	os.WriteFile(extra, m[1], 0o644)
	code, out, e := run("-f", realFile, "-f", extra, "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	if n := strings.Count(out, "\n") - 1; n != 3 || !strings.Contains(out, "12.8.1") {
		t.Fatalf("want a third variant with CUDA 12.8.1:\n%s", out)
	}
	// Appended to a copy of variants.hcl, as the README says, it works too.
	src, _ := os.ReadFile(realFile)
	copyFile := filepath.Join(dir, "variants.hcl")
	os.WriteFile(copyFile, append(append(src, '\n'), m[1]...), 0o644)
	if code, out, e := run("-f", copyFile, "list"); code != 0 || strings.Count(out, "\n") != 4 {
		t.Fatalf("copy: exit %d\n%s%s", code, out, e)
	}
}

func printAndRender(tb testing.TB, out string) {
	files := []string{"-f", realFile, "-f", "testdata/matrix-1000.hcl"}
	if code, _, e := run(append(files, "print")...); code != 0 {
		tb.Fatalf("print: %s", e)
	}
	if code, _, e := run(append(files, "render", "--no-lint", "--out", out)...); code != 0 {
		tb.Fatalf("render: %s", e)
	}
}

// BenchmarkPrintRender1000 resolves, prints and renders a matrix of 1000
// combinations (plus the two real variants).
func BenchmarkPrintRender1000(b *testing.B) {
	out := b.TempDir()
	for i := 0; i < b.N; i++ {
		printAndRender(b, out)
	}
}

// variants.hcl stays in canonical HCL formatting, so machine edits
// (runner-bump) change only what they mean to.
func TestVariantsFileIsFormatted(t *testing.T) {
	if err := checkHCLFormatted(realFile); err != nil {
		t.Fatal(err)
	}
}

// The format check fails when it has nothing to check.
func TestFormatCheckNeedsTheFile(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.hcl")
	os.WriteFile(empty, nil, 0o644)
	for _, p := range []string{filepath.Join(t.TempDir(), "missing.hcl"), empty} {
		if err := checkHCLFormatted(p); err == nil {
			t.Errorf("checkHCLFormatted(%s) passed", p)
		}
	}
}

func checkHCLFormatted(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(src)) == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	if got := hclwrite.Format(src); !bytes.Equal(got, src) {
		return fmt.Errorf("%s is not in canonical HCL format (as terraform fmt / hclfmt write it)", path)
	}
	return nil
}
