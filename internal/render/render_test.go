package render

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/golden"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

func noEnv(string) (string, bool) { return "", false }

// realMatrix loads the project's variants.hcl with the environment ignored,
// so the golden files do not depend on the shell running the tests.
func realMatrix(t testing.TB, opts variants.Options) *variants.Matrix {
	t.Helper()
	if opts.LookupEnv == nil {
		opts.LookupEnv = noEnv
	}
	m, files, diags := variants.LoadFiles([]string{"../../variants.hcl"}, opts)
	if diags.HasErrors() {
		t.Fatal(variants.FormatDiagnostics(files, diags))
	}
	return m
}

func TestGoldenDockerfiles(t *testing.T) {
	m := realMatrix(t, variants.Options{})
	for _, v := range m.Variants {
		plan, err := Variant(v)
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, v.Name+".Dockerfile", plan.Dockerfile)
		if want := map[string]string{"linux/amd64": "worker-linux-amd64"}; plan.WorkerBinaries["linux/amd64"] != want["linux/amd64"] {
			t.Errorf("worker binaries = %v", plan.WorkerBinaries)
		}
	}
}

func TestDeterministic(t *testing.T) {
	for i := 0; i < 5; i++ {
		a, b := realMatrix(t, variants.Options{}), realMatrix(t, variants.Options{})
		for j := range a.Variants {
			pa, _ := Variant(a.Variants[j])
			pb, _ := Variant(b.Variants[j])
			if !bytes.Equal(pa.Dockerfile, pb.Dockerfile) {
				t.Fatalf("render of %s is not deterministic", a.Variants[j].Name)
			}
		}
	}
}

// The Dockerfile must carry everything the image contract promises.
func TestDockerfileContract(t *testing.T) {
	m := realMatrix(t, variants.Options{Vars: []string{`RUNNER_SHA256={"linux/amd64":"` + strings.Repeat("a", 64) + `","linux/arm64":"` + strings.Repeat("b", 64) + `"}`, `PLATFORMS=["linux/amd64","linux/arm64"]`}})
	plan, err := Variant(m.Find("gpu"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(plan.Dockerfile)
	lines := strings.Split(strings.TrimSpace(df), "\n")
	for _, want := range []string{
		"FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04\n",
		"FROM gcr.io/kaniko-project/executor:v1.23.2 AS kaniko\n",
		"ARG RUNNER_SHA256_ARM64=" + strings.Repeat("b", 64),
		"arm64) arch=arm64; sum=\"${RUNNER_SHA256_ARM64}\"",
		"libssl3t64", "liblttng-ust1t64", "rm -rf /var/lib/apt/lists/*",
		"installdependencies.sh", "COPY --from=kaniko /kaniko/executor /kaniko/executor",
		"RUNNER_ALLOW_RUNASROOT=1", "useradd", "chown -R runner:runner /actions-runner",
		`"io.runpod.worker-github-runner.cuda-version"="12.6.3"`,
		`"io.runpod.worker-github-runner.runner-version"="2.337.0"`,
		`"io.runpod.worker-github-runner.kaniko-version"="v1.23.2"`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The checksum is verified before extraction.
	if strings.Index(df, `"${got}" != "${sum}"`) > strings.Index(df, "tar -xzf") {
		t.Error("checksum check comes after extraction")
	}
	// The worker is the last layer and the entrypoint; no Python, no syntax line.
	if !strings.HasPrefix(lines[len(lines)-2], "COPY worker-linux-${TARGETARCH} /usr/local/bin/worker") ||
		lines[len(lines)-1] != `ENTRYPOINT ["/usr/local/bin/worker"]` {
		t.Errorf("worker is not last:\n%s", strings.Join(lines[len(lines)-3:], "\n"))
	}
	if strings.Contains(df, "python") || strings.Contains(df, "# syntax") {
		t.Error("Dockerfile mentions python or a syntax directive")
	}
	if len(plan.WorkerBinaries) != 2 || plan.WorkerBinaries["linux/arm64"] != "worker-linux-arm64" {
		t.Errorf("worker binaries = %v", plan.WorkerBinaries)
	}
}

func TestLintCleanForEveryVariant(t *testing.T) {
	for _, release := range []string{"dev", "v1.0.0"} {
		m := realMatrix(t, variants.Options{Vars: []string{"RELEASE=" + release}})
		for _, v := range m.Variants {
			plan, err := Variant(v)
			if err != nil {
				t.Fatal(err)
			}
			ws, err := Lint(context.Background(), plan.Dockerfile)
			if err != nil {
				t.Fatal(err)
			}
			if len(ws) != 0 {
				t.Errorf("%s (%s): %d lint warnings:\n%s", v.Name, release, len(ws), FormatWarnings(ws))
			}
		}
	}
}

// The linter check above is only worth something if the linter sees
// problems: feed it known-bad Dockerfiles.
func TestLintFindsProblems(t *testing.T) {
	for name, df := range map[string]string{
		"FromAsCasing":        "FROM busybox as base\nRUN true\n",
		"JSONArgsRecommended": "FROM busybox\nENTRYPOINT /bin/sh\n",
		"UndefinedVar":        "FROM busybox\nCOPY $NOPE /x\n",
	} {
		ws, err := Lint(context.Background(), []byte(df))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, w := range ws {
			found = found || w.Rule == name
		}
		if !found {
			t.Errorf("linter did not report %s for %q: %v", name, df, ws)
		}
	}
	if _, err := Lint(context.Background(), []byte("FROM busybox\nCOPY\n")); err == nil {
		t.Error("a Dockerfile that does not parse lints without error")
	}
}

func TestQuoteEscapes(t *testing.T) {
	m := realMatrix(t, variants.Options{Sets: []string{`cpu.labels.note=say "hi" for $5 \o/`}})
	plan, err := Variant(m.Find("cpu"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plan.Dockerfile), `"note"="say \"hi\" for \$5 \\o/"`) {
		t.Fatalf("label not escaped:\n%s", plan.Dockerfile)
	}
	if ws, err := Lint(context.Background(), plan.Dockerfile); err != nil || len(ws) != 0 {
		t.Fatalf("lint: %v %v", err, ws)
	}
}
