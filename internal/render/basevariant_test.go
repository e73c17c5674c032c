package render

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

const builtOn = `variant "cpu-tools" {
  inherits = ["cpu"]
  tags     = ["dev-cpu-tools"]
  steps    = ["RUN echo tools > /opt/tools"]
}

variant "cpu-more" {
  inherits = ["cpu"]
  base     = variant.cpu-tools
  tags     = ["dev-cpu-more"]
  packages = concat(PACKAGES, ["tree"])
  args     = { MORE = "1" }
  steps    = ["RUN cat /opt/tools > /opt/more"]
}
`

// A variant built on another (base = variant.NAME) has that variant's
// layers, its worker excepted, as a stage of its own Dockerfile (so the
// build cache shares them), then its extra packages and steps, and the
// worker last; the root Dockerfile builds it from the parent's stage.
func TestVariantBuiltOnVariant(t *testing.T) {
	m, files := loadSteps(t, builtOn)
	v := m.Find("cpu-more")
	if v == nil || v.Parent == nil || v.Parent.Name != "cpu-tools" || v.Base != "ubuntu:24.04" || v.BaseVariant != "cpu-tools" {
		t.Fatalf("cpu-more = %+v", v)
	}
	if d := CheckSteps(v, files); d.HasErrors() {
		t.Fatal(d)
	}
	plan, err := Variant(v)
	if err != nil {
		t.Fatal(err)
	}
	df := string(plan.Dockerfile)
	order := []string{"FROM ubuntu:24.04 AS base-cpu-tools\n", "apt-get install", "RUN echo tools > /opt/tools\nUSER root\n",
		"/kaniko/executor", "actions-runner-linux", "\"io.runpod.worker-github-runner.variant\"=\"cpu-tools\"",
		"\nFROM base-cpu-tools\n", "ARG MORE=\"1\"\n", "        tree \\\n", "RUN cat /opt/tools > /opt/more\nUSER root\n",
		"ENV WORKER_FLAVOUR=cpu\n", "\"io.runpod.worker-github-runner.variant\"=\"cpu-more\"", "COPY --from=worker /"}
	at := -1
	for _, s := range order {
		i := strings.Index(df[at+1:], s)
		if i < 0 {
			t.Fatalf("%q is missing or out of place (after %d):\n%s", s, at, df)
		}
		at += 1 + i
	}
	if n := strings.Count(df, "/usr/local/bin/worker\n"); n != 1 || strings.Count(df, "apt-get install") != 2 {
		t.Errorf("want one worker layer and two apt layers (the parent's, tree):\n%s", df)
	}
	for _, b := range [][]byte{plan.Dockerfile, plan.Prepared} {
		if ws, err := Lint(context.Background(), b); err != nil || len(ws) != 0 {
			t.Fatalf("lint: %v %v\n%s", err, ws, b)
		}
	}
	// The parent renders as before, on its own.
	parent, err := Variant(m.Find("cpu-tools"))
	if err != nil || strings.Contains(string(parent.Dockerfile), "base-") {
		t.Fatalf("cpu-tools: %v\n%s", err, parent.Dockerfile)
	}
	root, err := Root(m.Variants)
	if err != nil {
		t.Fatal(err)
	}
	r := string(root)
	if i, j := strings.Index(r, "AS variant-cpu-tools\n"), strings.Index(r, "\nFROM variant-cpu-tools AS variant-cpu-more\n"); i < 0 || j < i {
		t.Fatalf("root Dockerfile does not build cpu-more on cpu-tools:\n%s", r)
	}
	if ws, err := Lint(context.Background(), root); err != nil || len(ws) != 0 {
		t.Fatalf("lint root: %v %v", err, ws)
	}
}

// Unknown base variants, cycles and platforms the base lacks are errors at
// the base attribute.
func TestBaseVariantErrors(t *testing.T) {
	src, err := os.ReadFile("../../variants.hcl")
	if err != nil {
		t.Fatal(err)
	}
	first := strings.Count(string(src), "\n") + 2 // the first line of the extra variants
	for _, tc := range []struct{ name, extra, want, pos string }{
		{"unknown", "variant \"a\" {\n  inherits = [\"cpu\"]\n  base     = variant.cpuu\n  tags     = [\"a\"]\n}\n",
			`base names variant "cpuu", which is not in the matrix (did you mean "cpu"?)`, fmt.Sprintf(":%d:14", first+2)},
		{"cycle", "variant \"a\" {\n  inherits = [\"cpu\"]\n  base     = variant.b\n  tags     = [\"a\"]\n}\nvariant \"b\" {\n  inherits = [\"cpu\"]\n  base     = variant[\"a\"]\n  tags     = [\"b\"]\n}\n",
			`Variant "a": built on itself: a -> b -> a.`, fmt.Sprintf(":%d:14", first+2)},
		{"self", "variant \"a\" {\n  inherits = [\"cpu\"]\n  base     = variant.a\n  tags     = [\"a\"]\n}\n",
			`built on itself: a -> a.`, fmt.Sprintf(":%d:14", first+2)},
		{"platform", "variant \"a\" {\n  inherits  = [\"cpu\"]\n  base      = variant.cpu\n  platforms = [\"linux/arm64\"]\n  tags      = [\"a\"]\n}\n",
			`"linux/arm64" is not a platform of variant "cpu"`, fmt.Sprintf(":%d:16", first+3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, files, diags := variants.LoadFiles([]string{stepsFile(t, tc.extra)}, variants.Options{LookupEnv: noEnv})
			out := variants.FormatDiagnostics(files, diags)
			if !diags.HasErrors() || !strings.Contains(out, tc.want) || !strings.Contains(out, "variants.hcl"+tc.pos+": error") {
				t.Fatalf("want %q at variants.hcl%s, got:\n%s", tc.want, tc.pos, out)
			}
		})
	}
}
