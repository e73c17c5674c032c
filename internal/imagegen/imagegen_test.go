package imagegen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/runpod-workers/worker-github_runner/internal/golden"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
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

// realRunner gives the golden placeholders of the runner release in
// variants.hcl, so `imagegen runner-bump` needs no golden edits.
func realRunner(t testing.TB) []golden.Placeholder {
	t.Helper()
	src, err := os.ReadFile(realFile)
	if err != nil {
		t.Fatal(err)
	}
	_, platforms, err := variants.RunnerDefaults(realFile, src)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := json.Marshal(platforms) // every sum the file holds, not only the built ones
	opts := variants.Options{LookupEnv: func(string) (string, bool) { return "", false }, Vars: []string{"PLATFORMS=" + string(all)}}
	m, files, diags := variants.LoadFiles([]string{realFile}, opts)
	if diags.HasErrors() {
		t.Fatal(variants.FormatDiagnostics(files, diags))
	}
	r := m.Variants[0].Runner
	return append(golden.Runner(r.Version, r.SHA256), golden.FilePins(t, realFile)...)
}

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

func TestPrintGolden(t *testing.T) {
	for _, tc := range []struct{ name, release string }{{"print-dev", "dev"}, {"print-release", "v1.0.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run("-f", realFile, "--var", "RELEASE="+tc.release, "--var", "LATEST="+fmt.Sprint(tc.release != "dev"), "print")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			golden.Check(t, tc.name+".json", []byte(out), realRunner(t)...)
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
	t.Setenv("LATEST", "true")
	_, out, _ = run("-f", realFile, "print")
	for _, want := range []string{":v1.0.0-gpu", ":latest-gpu", ":v1.0.0-cpu", ":latest-cpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("release print lacks %s", want)
		}
	}
}

// latest-* moves only when the release pipeline says so (LATEST=true): a
// pre-release, or a backport below the newest release, gets only its
// version tags.
func TestPrintLatestOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		release, latest string
		set, want       bool
	}{
		{"v1.1.0-rc.1", "", false, false},
		{"v1.0.0", "", false, false},
		{"v0.9.1", "false", true, false},
		{"v1.0.0", "true", true, true},
	} {
		t.Setenv("RELEASE", tc.release)
		os.Unsetenv("LATEST")
		if tc.set {
			t.Setenv("LATEST", tc.latest)
		}
		code, out, errOut := run("-f", realFile, "print")
		if code != 0 {
			t.Fatalf("RELEASE=%s LATEST=%q: exit %d: %s", tc.release, tc.latest, code, errOut)
		}
		if !strings.Contains(out, ":"+tc.release+"-gpu") || strings.Contains(out, ":latest-") != tc.want {
			t.Errorf("RELEASE=%s LATEST=%q: latest tags %v, want %v:\n%s", tc.release, tc.latest, !tc.want, tc.want, out)
		}
	}
	t.Setenv("LATEST", "yes")
	if code, _, errOut := run("-f", realFile, "print"); code != ExitFailure || !strings.Contains(errOut, `"yes" is not a bool`) {
		t.Errorf("LATEST=yes: exit %d: %s", code, errOut)
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
	want := "VARIANT  FLAVOUR            PLATFORMS    BASE                                          COMPRESSION  TAGS\n" +
		"cpu      cpu                linux/amd64  ubuntu:24.04                                  gzip         docker.io/runpod/worker-github_runner:dev-cpu\n" +
		"gpu      gpu (CUDA 12.6.3)  linux/amd64  nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04  gzip         docker.io/runpod/worker-github_runner:dev-gpu\n" +
		"scaler   scaler             linux/amd64  gcr.io/distroless/static-debian12:nonroot     gzip         docker.io/runpod/worker-github_runner:dev-scaler\n"
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
	if code, o, e := run("-f", realFile, "render", "--out", out, "--check"); code != 0 || !strings.Contains(o, "3 Dockerfile(s)") {
		t.Fatalf("check after render: %d %s %s", code, o, e)
	}
	// A second render changes nothing.
	if _, o, _ := run("-f", realFile, "render", "--out", out); strings.Count(o, "unchanged") != 4 { // and the root Dockerfile
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
	if n := strings.Count(out, "\n") - 1; n != 4 || !strings.Contains(out, "12.8.1") {
		t.Fatalf("want a fourth variant with CUDA 12.8.1:\n%s", out)
	}
	// Appended to a copy of variants.hcl, as the README says, it works too.
	src, _ := os.ReadFile(realFile)
	copyFile := filepath.Join(dir, "variants.hcl")
	os.WriteFile(copyFile, append(append(src, '\n'), m[1]...), 0o644)
	if code, out, e := run("-f", copyFile, "list"); code != 0 || strings.Count(out, "\n") != 5 {
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

// Rendering every variant also writes the root Dockerfile beside the --out
// folder (or at --root), which --check then checks too; rendering some
// variants leaves it alone.
func TestRenderRootDockerfile(t *testing.T) {
	base := t.TempDir()
	out := filepath.Join(base, "dockerfiles")
	if code, o, e := run("-f", realFile, "render", "--no-lint", "--out", out); code != 0 || !strings.Contains(o, filepath.Join(base, "Dockerfile")) {
		t.Fatalf("render: %d %s %s", code, o, e)
	}
	b, err := os.ReadFile(filepath.Join(base, "Dockerfile"))
	if err != nil || !strings.Contains(string(b), "\nFROM variant-${BUILD_TYPE}\n") {
		t.Fatalf("root Dockerfile: %v\n%.300s", err, b)
	}
	if code, o, e := run("-f", realFile, "render", "--no-lint", "--out", out, "--check"); code != 0 || !strings.Contains(o, "Dockerfile is up to date") {
		t.Fatalf("check: %d %s %s", code, o, e)
	}
	os.WriteFile(filepath.Join(base, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	if code, _, e := run("-f", realFile, "render", "--no-lint", "--out", out, "--check"); code != ExitFailure || !strings.Contains(e, filepath.Join(base, "Dockerfile")+" is out of date") {
		t.Fatalf("stale root: %d %s", code, e)
	}
	if code, _, e := run("-f", realFile, "render", "--no-lint", "--out", out, "--check", "--no-root"); code != 0 {
		t.Fatalf("--no-root still checks the root Dockerfile: %s", e)
	}
	if code, _, e := run("-f", realFile, "render", "--no-lint", "--out", out, "cpu"); code != 0 {
		t.Fatalf("render cpu: %s", e)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "Dockerfile")); string(b) != "FROM scratch\n" {
		t.Error("rendering one variant rewrote the root Dockerfile")
	}
	other := filepath.Join(base, "elsewhere.Dockerfile")
	if code, _, e := run("-f", realFile, "render", "--no-lint", "--out", out, "--root", other); code != 0 {
		t.Fatalf("--root: %s", e)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("--root %s not written: %v", other, err)
	}
}

// A bad build step stops render (and every command) with the variants
// file's position, before anything is written.
func TestRenderRejectsBadStep(t *testing.T) {
	dir := t.TempDir()
	extra := filepath.Join(dir, "ml.hcl")
	src := "variant \"ml\" {\n  inherits = [\"gpu\"]\n  tags     = [\"ml\"]\n  steps = [\n    <<-EOT\n    RUN true\n    PIP install torch\n    EOT\n  ]\n}\n"
	if err := os.WriteFile(extra, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	code, _, errOut := run("-f", realFile, "-f", extra, "render", "--out", out)
	if code != ExitFailure || !strings.Contains(errOut, "ml.hcl:7:1: error: Invalid build step") || !strings.Contains(errOut, "unknown instruction: PIP") {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("render wrote %s: %v", out, err)
	}
}

// README's gpu-ml example renders and lints as printed: its pip line
// after the system packages, the CUDA wheel index from the variant's cuda.
func TestReadmeMLExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- ml-example -->\\s*```hcl\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no <!-- ml-example --> hcl block")
	}
	dir := t.TempDir()
	extra := filepath.Join(dir, "ml.hcl")
	os.WriteFile(extra, m[1], 0o644)
	out := filepath.Join(dir, "out")
	if code, o, e := run("-f", realFile, "-f", extra, "render", "--out", out); code != 0 {
		t.Fatalf("exit %d: %s%s", code, o, e)
	}
	df, err := os.ReadFile(filepath.Join(out, "gpu-ml.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(df)
	pip := strings.Index(s, "RUN pip install --no-cache-dir torch pytest \\\n    --extra-index-url https://download.pytorch.org/whl/cu126\nENV TORCH_HOME=/opt/torch\nUSER root\n")
	if pip < 0 || pip < strings.Index(s, "apt-get install") || pip > strings.Index(s, "COPY --from=kaniko") {
		t.Fatalf("the steps are missing or out of place:\n%s", s)
	}
}

const ownTemplate = `# A template of my own for {{.V.Name}}.
FROM {{.V.Kaniko.Image}} AS kaniko
{{- if not .Prepared}}

{{template "worker" .}}
{{- end}}

FROM {{.V.Base}}

{{template "layers" .}}
RUN echo own-template

{{template "workerLayer" .}}
`

// A variant's own template (a path relative to its variants file) renders
// its Dockerfile, can use the built-in template's parts, is linted and
// checked by render --check like the others, and stays out of the root
// Dockerfile; a missing file is an error at the template field.
func TestVariantOwnTemplate(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "conf", "tmpl"), 0o755)
	extra := filepath.Join(dir, "conf", "own.hcl")
	os.WriteFile(extra, []byte("variant \"own\" {\n  inherits = [\"cpu\"]\n  tags     = [\"own\"]\n  template = \"tmpl/own.Dockerfile.tmpl\"\n}\n"), 0o644)
	tmplFile := filepath.Join(dir, "conf", "tmpl", "own.Dockerfile.tmpl")
	os.WriteFile(tmplFile, []byte(ownTemplate), 0o644)
	out := filepath.Join(dir, "out")
	if code, o, e := run("-f", realFile, "-f", extra, "render", "--out", out); code != 0 {
		t.Fatalf("exit %d: %s%s", code, o, e)
	}
	df, _ := os.ReadFile(filepath.Join(out, "own.Dockerfile"))
	if !strings.HasPrefix(string(df), "# A template of my own for own.\n") || !strings.Contains(string(df), "apt-get install") ||
		!strings.Contains(string(df), "RUN echo own-template\n\n# The worker changes most often") {
		t.Fatalf("own.Dockerfile:\n%s", df)
	}
	if root, _ := os.ReadFile(filepath.Join(dir, "Dockerfile")); !strings.Contains(string(root), "AS variant-cpu") || strings.Contains(string(root), "variant-own") {
		t.Errorf("the root Dockerfile holds own, or not cpu:\n%s", root)
	}
	if code, o, e := run("-f", realFile, "-f", extra, "render", "--check", "--out", out); code != 0 {
		t.Fatalf("render --check: exit %d: %s%s", code, o, e)
	}
	os.WriteFile(tmplFile, []byte(strings.Replace(ownTemplate, "own-template", "changed", 1)), 0o644)
	if code, _, _ := run("-f", realFile, "-f", extra, "render", "--check", "--out", out); code != ExitFailure {
		t.Errorf("render --check after a template change: exit %d, want %d", code, ExitFailure)
	}
	os.WriteFile(tmplFile, []byte(strings.Replace(ownTemplate, "RUN echo", "RUNN echo", 1)), 0o644)
	if code, _, e := run("-f", realFile, "-f", extra, "render", "--out", out); code != ExitFailure || !strings.Contains(e, "own") {
		t.Errorf("a template with an unknown instruction: exit %d: %s", code, e)
	} else {
		t.Log(e)
	}
	os.Remove(tmplFile)
	if code, _, e := run("-f", realFile, "-f", extra, "render", "--out", out); code != ExitFailure || !strings.Contains(e, "own.hcl:4:14: error: Invalid template") {
		t.Errorf("a missing template: exit %d: %s", code, e)
	}
}
