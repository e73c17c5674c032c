package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// stepsFile is the project's variants.hcl plus one variant with steps.
func stepsFile(t *testing.T, variant string) string {
	t.Helper()
	src, err := os.ReadFile("../../variants.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "variants.hcl")
	if err := os.WriteFile(p, append(src, []byte("\n"+variant)...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadSteps(t *testing.T, variant string) (*variants.Matrix, variants.Files) {
	t.Helper()
	m, files, diags := variants.LoadFiles([]string{stepsFile(t, variant)}, variants.Options{LookupEnv: noEnv})
	if diags.HasErrors() {
		t.Fatal(variants.FormatDiagnostics(files, diags))
	}
	return m, files
}

const mlVariant = `variant "ml" {
  inherits = ["gpu"]
  matrix   = { torch = ["2.5"] }
  name     = "ml-${torch}"
  tags     = ["${RELEASE}-ml-${torch}"]
  steps = [
    "ENV ML_CUDA=${cuda}",
    <<-EOT
    RUN <<EOF
    set -eu
    echo torch==${torch} > /opt/requirements.txt
    EOF
    EOT
    ,
    "USER nobody",
  ]
}
`

// Steps take the variant's values (cuda, matrix keys), come after the
// system packages and before the Kaniko, runner and worker layers, and
// are followed by USER root; the result lints clean.
func TestStepsRenderBeforeRunnerLayers(t *testing.T) {
	m, files := loadSteps(t, mlVariant)
	v := m.Find("ml-2.5")
	if v == nil {
		t.Fatal("no variant ml-2.5")
	}
	if d := CheckSteps(v, files); d.HasErrors() {
		t.Fatal(variants.FormatDiagnostics(files, d))
	}
	plan, err := Variant(v)
	if err != nil {
		t.Fatal(err)
	}
	df := string(plan.Dockerfile)
	order := []string{"apt-get install", "ENV ML_CUDA=12.6.3", "RUN <<EOF\nset -eu\necho torch==2.5 > /opt/requirements.txt\nEOF\nUSER nobody\nUSER root\n",
		"COPY --from=kaniko", "actions-runner-linux", "/usr/local/bin/worker"}
	at := -1
	for _, s := range order {
		i := strings.Index(df, s)
		if i <= at {
			t.Fatalf("%q is missing or out of place (at %d, previous at %d):\n%s", s, i, at, df)
		}
		at = i
	}
	if ws, err := Lint(context.Background(), plan.Dockerfile); err != nil || len(ws) != 0 {
		t.Fatalf("lint: %v %v", err, ws)
	}
	if plain := realMatrix(t, variants.Options{}).Find("gpu"); plain == nil || len(plain.Steps) != 0 {
		t.Fatal("the project's gpu variant has steps")
	}
}

// A bad step is an error at its line in variants.hcl: the heredoc's line
// for a multi-line step, the string for a one-line one.
func TestBadStepsPointAtVariantsFile(t *testing.T) {
	src, err := os.ReadFile("../../variants.hcl")
	if err != nil {
		t.Fatal(err)
	}
	stepsLine := strings.Count(string(src), "\n") + 5 // the line of "steps = " below
	for _, tc := range []struct {
		name, steps, want string
		line, col         int // line relative to stepsLine
	}{
		{"unknown instruction", `["RUN true", "FETCH https://x"]`, `step 2, line 1: unknown instruction: FETCH`, 0, 24},
		{"unknown instruction in heredoc", "[<<-EOT\n    RUN true\n    INSTAL curl\n    EOT\n  ]", `step 1, line 2: unknown instruction: INSTAL`, 2, 1},
		{"unterminated heredoc", `["RUN <<EOF\necho hi"]`, `step 1, line 1: unterminated heredoc`, 0, 12},
		{"trailing continuation", `["RUN echo \\"]`, `it does not end`, 0, 12},
		{"FROM", `["FROM ubuntu:24.04"]`, `FROM is not allowed`, 0, 12},
		{"empty", `["  "]`, `the step is empty`, 0, 12},
		{"comment only", `["# nothing"]`, `no instruction`, 0, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, files := loadSteps(t, "variant \"bad\" {\n  inherits = [\"cpu\"]\n  tags     = [\"bad\"]\n  steps = "+tc.steps+"\n}\n")
			diags := CheckSteps(m.Find("bad"), files)
			out := variants.FormatDiagnostics(files, diags)
			pos := fmt.Sprintf("variants.hcl:%d:%d: error: Invalid build step", stepsLine+tc.line, tc.col)
			if !diags.HasErrors() || !strings.Contains(out, tc.want) || !strings.Contains(out, pos) {
				t.Fatalf("want %q at %s, got:\n%s", tc.want, pos, out)
			}
		})
	}
}
