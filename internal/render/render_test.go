package render

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/runpod-workers/worker-github_runner/internal/golden"
	"github.com/runpod-workers/worker-github_runner/internal/platform"
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
		ps := append(golden.Runner(v.Runner.Version, v.Runner.SHA256), golden.FilePins(t, "../../variants.hcl")...)
		golden.Check(t, v.Name+".Dockerfile", plan.Dockerfile, ps...)
		golden.Check(t, v.Name+".prepared.Dockerfile", plan.Prepared, ps...)
	}
	root, err := Root(m.Variants)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Variants[0].Runner
	golden.Check(t, "root.Dockerfile", root, append(golden.Runner(r.Version, r.SHA256), golden.FilePins(t, "../../variants.hcl")...)...)
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
	df := string(golden.Normalize(plan.Dockerfile, golden.FilePins(t, "../../variants.hcl")...))
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
		`"io.runpod.worker-github-runner.runner-version"="` + m.Find("gpu").Runner.Version + `"`,
		`"io.runpod.worker-github-runner.kaniko-version"="v1.23.2"`,
		// Python as the seed had it, sudo (granting nothing by itself), and a
		// tool cache the job user owns.
		"        python3 \\\n", "        python3-pip \\\n", "        python3-venv \\\n", "        python-is-python3 \\\n",
		"        sudo \\\n", "ENV PIP_BREAK_SYSTEM_PACKAGES=1\n",
		"install -d -o runner -g runner -m 0755 /opt/hostedtoolcache;",
		"RUNNER_TOOL_CACHE=/opt/hostedtoolcache", "AGENT_TOOLSDIRECTORY=/opt/hostedtoolcache",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The checksum is verified before extraction.
	if strings.Index(df, `"${got}" != "${sum}"`) > strings.Index(df, "tar -xzf") {
		t.Error("checksum check comes after extraction")
	}
	// No sudoers entry is baked in: the worker writes one at job start
	// when the endpoint enables sudo.
	if strings.Contains(df, "sudoers") || strings.Contains(df, "NOPASSWD") {
		t.Error("Dockerfile grants sudo")
	}
	// The worker is the last layer and the entrypoint; no syntax line.
	if !strings.HasPrefix(lines[len(lines)-2], "COPY --from=worker /worker-linux-${TARGETARCH} /usr/local/bin/worker") ||
		lines[len(lines)-1] != `ENTRYPOINT ["/usr/local/bin/worker"]` {
		t.Errorf("worker is not last:\n%s", strings.Join(lines[len(lines)-3:], "\n"))
	}
	if strings.Contains(df, "# syntax") {
		t.Error("Dockerfile has a syntax directive")
	}
	// The file name comes from the platform table, the one place that
	// knows it (workerbin puts the binaries there): in the worker stage of
	// the self-contained Dockerfile, at the context's root of the prepared one.
	if !strings.Contains(df, "\nCOPY --from=worker /"+platform.DockerfileWorkerBinary()+" /usr/local/bin/worker\n") {
		t.Errorf("Dockerfile does not copy %s from the worker stage", platform.DockerfileWorkerBinary())
	}
	if !strings.Contains(string(plan.Prepared), "\nCOPY "+platform.DockerfileWorkerBinary()+" /usr/local/bin/worker\n") {
		t.Errorf("the prepared Dockerfile does not copy %s from the context", platform.DockerfileWorkerBinary())
	}
}

// A platform the table does not know is an error, not a Dockerfile with
// an empty runner architecture.
func TestUnknownPlatform(t *testing.T) {
	v := realMatrix(t, variants.Options{}).Variants[0]
	v.Platforms = []string{"linux/riscv64"}
	if _, err := Variant(v); err == nil || !strings.Contains(err.Error(), `unsupported platform "linux/riscv64"`) {
		t.Fatalf("Variant = %v, want an unsupported-platform error", err)
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
			for form, df := range map[string][]byte{"self-contained": plan.Dockerfile, "prepared": plan.Prepared} {
				ws, err := Lint(context.Background(), df)
				if err != nil {
					t.Fatal(err)
				}
				if len(ws) != 0 {
					t.Errorf("%s (%s, %s): %d lint warnings:\n%s", v.Name, release, form, len(ws), FormatWarnings(ws))
				}
			}
		}
		root, err := Root(m.Variants)
		if err != nil {
			t.Fatal(err)
		}
		if ws, err := Lint(context.Background(), root); err != nil || len(ws) != 0 {
			t.Errorf("root Dockerfile (%s): %v %d lint warnings:\n%s", release, err, len(ws), FormatWarnings(ws))
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

// instructions parses a Dockerfile into its instructions (keyword and
// arguments), comments left out.
func instructions(t *testing.T, df []byte) []string {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(df))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range res.AST.Children {
		out = append(out, n.Original)
	}
	return out
}

// loadNamed loads the project's variants.hcl under another file name, as
// `imagegen -f NAME` would.
func loadNamed(t *testing.T, name string) *variants.Variant {
	t.Helper()
	data, err := os.ReadFile("../../variants.hcl")
	if err != nil {
		t.Fatal(err)
	}
	m, files, diags := variants.Load([]variants.Source{{Name: name, Data: data}}, variants.Options{LookupEnv: noEnv})
	if diags.HasErrors() {
		t.Fatal(variants.FormatDiagnostics(files, diags))
	}
	return m.Find("cpu")
}

// The -f file name goes into the header comment: a newline in it must not
// start an instruction.
func TestHeaderFileNameEscaped(t *testing.T) {
	plain, err := Variant(loadNamed(t, "variants.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	want := instructions(t, plain.Dockerfile)
	for _, name := range []string{
		"dir/evil\nRUN touch pwned\n#.hcl",
		"evil\rRUN touch pwned\n.hcl",
		"a:1:2\x1b[2J\u2028b.hcl",
	} {
		plan, err := Variant(loadNamed(t, name))
		if err != nil {
			t.Fatal(err)
		}
		header, _, _ := strings.Cut(string(plan.Dockerfile), "\n")
		for _, r := range header {
			if r < 0x20 || r == 0x7f || r == '\u2028' {
				t.Errorf("%q: header has control character %U: %q", name, r, header)
			}
		}
		if got := instructions(t, plan.Dockerfile); !slices.Equal(got, want) {
			t.Errorf("%q: the Dockerfile has other instructions than with a plain name:\n%s", name, plan.Dockerfile)
		}
	}
	plan, _ := Variant(loadNamed(t, "dir/evil\nRUN x.hcl"))
	if !strings.HasPrefix(string(plan.Dockerfile), `# Generated by imagegen from evil\nRUN x.hcl, variant "cpu".`) {
		t.Errorf("header does not carry the escaped base name:\n%.200s", plan.Dockerfile)
	}
	plan, _ = Variant(loadNamed(t, "conf/my:variants.hcl"))
	if !strings.HasPrefix(string(plan.Dockerfile), `# Generated by imagegen from my:variants.hcl, variant "cpu".`) {
		t.Errorf("a ':' in the file name cuts it:\n%.200s", plan.Dockerfile)
	}
}

// The runner download can authenticate to a mirror through the optional
// BuildKit secret runner_netrc, never through a build argument (those are
// recorded in the image history).
func TestRunnerDownloadOptionalSecret(t *testing.T) {
	plan, err := Variant(realMatrix(t, variants.Options{}).Find("cpu"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(plan.Dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range res.AST.Children {
		if !strings.Contains(n.Original, "curl -f") {
			continue
		}
		found = true
		if !slices.Contains(n.Flags, "--mount=type=secret,id=runner_netrc,target=/run/secrets/runner_netrc,required=false") {
			t.Errorf("the runner download has no optional runner_netrc secret mount: flags %v", n.Flags)
		}
		if !strings.Contains(n.Original, "--netrc-file /run/secrets/runner_netrc") || !strings.Contains(n.Original, "[ -s /run/secrets/runner_netrc ]") {
			t.Errorf("curl does not use the netrc only when it is given:\n%s", n.Original)
		}
	}
	if !found {
		t.Fatal("no curl in the Dockerfile")
	}
	for _, line := range strings.Split(string(plan.Dockerfile), "\n") {
		if strings.HasPrefix(line, "ARG ") && strings.Contains(strings.ToLower(line), "netrc") {
			t.Errorf("mirror credentials through a build argument: %s", line)
		}
	}
}
