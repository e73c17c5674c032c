package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const workflows = "../../.github/workflows/"

func readWorkflow(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(workflows, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func indentOf(line string) int { return len(line) - len(strings.TrimLeft(line, " ")) }

// block returns the lines after lines[i] indented deeper than lines[i]
// (blank lines included), and the index after them.
func block(lines []string, i int) ([]string, int) {
	base := indentOf(lines[i])
	j := i + 1
	for j < len(lines) && (strings.TrimSpace(lines[j]) == "" || indentOf(lines[j]) > base) {
		j++
	}
	return lines[i+1 : j], j
}

// step finds the step named name in a workflow: its run script and its
// shell: ("" when it has none).
func step(t *testing.T, wf, name string) (script, shell string) {
	t.Helper()
	lines := strings.Split(wf, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "- name: "+name {
			continue
		}
		// The step's keys are indented like "name:" (after "- ").
		keyIndent := indentOf(l) + 2
		j := i + 1
		for j < len(lines) && (strings.TrimSpace(lines[j]) == "" || indentOf(lines[j]) >= keyIndent) {
			k := strings.TrimSpace(lines[j])
			if indentOf(lines[j]) == keyIndent {
				switch {
				case k == "run: |":
					body, _ := block(lines, j)
					for n := range body {
						body[n] = strings.TrimPrefix(body[n], strings.Repeat(" ", keyIndent+2))
					}
					script = strings.Join(body, "\n")
				case strings.HasPrefix(k, "run: "):
					script = strings.TrimPrefix(k, "run: ")
				case strings.HasPrefix(k, "shell: "):
					shell = strings.TrimPrefix(k, "shell: ")
				}
			}
			j++
		}
		if script == "" {
			t.Fatalf("step %q has no run: script", name)
		}
		return script, shell
	}
	t.Fatalf("no step named %q", name)
	return "", ""
}

// githubShell is the command GitHub runs a step's script with: bash -e
// when neither the step nor the workflow's defaults name a shell (no
// pipefail: a failing command before a pipe goes unnoticed), and
// bash --noprofile --norc -eo pipefail for "shell: bash".
func githubShell(t *testing.T, wf, stepShell string) []string {
	t.Helper()
	shell := stepShell
	if shell == "" {
		if m := regexp.MustCompile(`(?m)^defaults:\n  run:\n    shell: (\S+)`).FindStringSubmatch(wf); m != nil {
			shell = m[1]
		}
	}
	switch shell {
	case "":
		return []string{"bash", "-e"}
	case "bash":
		return []string{"bash", "--noprofile", "--norc", "-eo", "pipefail"}
	}
	t.Fatalf("shell %q: not modelled", shell)
	return nil
}

// runStep runs a workflow step's script as GitHub would, in dir, with a
// GITHUB_OUTPUT file; it returns that file's content.
func runStep(t *testing.T, wf, name, dir string, env []string) (output, stderr string, code int) {
	t.Helper()
	script, shell := step(t, wf, name)
	p := filepath.Join(t.TempDir(), "step.sh")
	os.WriteFile(p, []byte(script+"\n"), 0o644)
	out := filepath.Join(t.TempDir(), "github_output")
	os.WriteFile(out, nil, 0o644)
	argv := append(githubShell(t, wf, shell), p)
	_, stderr, code = runIn(t, dir, append(env, "GITHUB_OUTPUT="+out), "", argv[0], argv[1:]...)
	b, _ := os.ReadFile(out)
	return string(b), stderr, code
}

// bumpGo is a fake go for the runner-bump step: runner-bump fails as it
// does with GitHub's API unreachable when FAKE_BUMP=fail; print answers
// as imagegen does after a bump to 2.338.0, or fails when FAKE_PRINT=fail.
func bumpGo(t *testing.T) []string {
	bin := t.TempDir()
	script := `#!/bin/sh
case "$*" in
"run ./cmd/imagegen runner-bump"*)
  if [ "$FAKE_BUMP" = fail ]; then echo 'imagegen: runner-bump: GET https://api.github.com/repos/actions/runner/releases/latest: dial tcp: connection refused' >&2; exit 1; fi
  echo 'variants.hcl: runner 2.337.0 -> 2.338.0' ;;
"run ./cmd/imagegen render"*) echo 'wrote dockerfiles/cpu.Dockerfile' ;;
"run ./cmd/imagegen print"*)
  if [ "$FAKE_PRINT" = fail ]; then echo 'imagegen: variants.hcl: 1 error(s)' >&2; exit 1; fi
  cat "$FAKE_PRINT_JSON" ;;
*) echo "fake go: unexpected $*" >&2; exit 9 ;;
esac
`
	os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755)
	pj := filepath.Join(bin, "print.json")
	os.WriteFile(pj, []byte(printJSON("2.338.0", sumNew)), 0o644)
	return []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE_PRINT_JSON=" + pj, "GITHUB_TOKEN=t0ken"}
}

// checkoutDir is a folder laid out like the repository's checkout for a
// workflow step: it has .github/scripts.
func checkoutDir(t *testing.T) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".github", "scripts"), 0o755)
	if err := os.Symlink(planScript, filepath.Join(dir, ".github", "scripts", "release-plan.sh")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// With GitHub's API unreachable the bump step fails (the workflow goes
// red) instead of opening nothing and passing.
func TestRunnerBumpStepFailsLoudly(t *testing.T) {
	wf := readWorkflow(t, "runner-bump.yml")
	env := append(bumpGo(t), "RUNNER_TEMP="+t.TempDir())
	out, errOut, code := runStep(t, wf, "Bump the runner", checkoutDir(t), env)
	if code != 0 || !strings.Contains(out, "version=2.338.0\n") {
		t.Fatalf("a good bump: exit %d, output %q, %s", code, out, errOut)
	}
	for _, failing := range []string{"FAKE_BUMP=fail", "FAKE_PRINT=fail"} {
		out, errOut, code = runStep(t, wf, "Bump the runner", checkoutDir(t), append(env, failing))
		if code == 0 || strings.Contains(out, "version=") {
			t.Errorf("%s: the step passed (exit %d, output %q, %s)", failing, code, out, errOut)
		}
	}
}

// Without an App or a PAT the workflow fails rather than open a pull
// request CI never runs on.
func TestRunnerBumpNeedsATokenThatTriggersCI(t *testing.T) {
	wf := readWorkflow(t, "runner-bump.yml")
	if _, errOut, code := runStep(t, wf, "A token that triggers CI", t.TempDir(), []string{"TOKEN="}); code == 0 {
		t.Errorf("no token: exit %d %s", code, errOut)
	}
	if _, errOut, code := runStep(t, wf, "A token that triggers CI", t.TempDir(), []string{"TOKEN=ghs_x"}); code != 0 {
		t.Errorf("a token: exit %d %s", code, errOut)
	}
	for _, want := range []string{"actions/create-github-app-token@", "token: ${{ steps.app.outputs.token || secrets.RUNNER_BUMP_TOKEN }}", "RUNNER_BUMP_APP_PRIVATE_KEY"} {
		if !strings.Contains(wf, want) {
			t.Errorf("runner-bump.yml lacks %q", want)
		}
	}
	if strings.Contains(wf, "| tee") || strings.Contains(wf, "pull-requests: write") {
		t.Errorf("runner-bump.yml pipes into tee or still gives GITHUB_TOKEN pull-requests: write")
	}
}

// fakeBin writes executables (name -> shell script body) into a folder put
// first in PATH.
func fakeBin(t *testing.T, scripts map[string]string) string {
	bin := t.TempDir()
	for name, body := range scripts {
		os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755)
	}
	return "PATH=" + bin + ":" + os.Getenv("PATH")
}

// Every digest imagegen pushed is signed, keyless; a failed signature
// fails the run.
func TestPublishSignsEveryDigest(t *testing.T) {
	wf := readWorkflow(t, "publish.yml")
	d1, d2 := "sha256:"+strings.Repeat("ab", 32), "sha256:"+strings.Repeat("cd", 32)
	meta := `{"variants": {"cpu": {"digest": "` + d1 + `", "image": "ghcr.io/o/w"}, "gpu": {"digest": "` + d2 + `", "image": "ghcr.io/o/w"}}}`
	for _, c := range []struct {
		cosign string
		ok     bool
	}{
		{`echo "$*" >> "$COSIGN_LOG"`, true},
		{`echo "$*" >> "$COSIGN_LOG"; case "$*" in *` + d2 + `) exit 1;; esac`, false},
	} {
		dir := checkoutDir(t)
		os.WriteFile(filepath.Join(dir, "build-metadata.json"), []byte(meta), 0o644)
		log := filepath.Join(t.TempDir(), "cosign.log")
		_, errOut, code := runStep(t, wf, "Sign the pushed digests", dir, []string{fakeBin(t, map[string]string{"cosign": c.cosign}), "COSIGN_LOG=" + log})
		b, _ := os.ReadFile(log)
		want := "sign --yes ghcr.io/o/w@" + d1 + "\nsign --yes ghcr.io/o/w@" + d2 + "\n"
		if (code == 0) != c.ok || string(b) != want {
			t.Errorf("cosign %q: exit %d (%s), cosign ran:\n%s", c.cosign, code, errOut, b)
		}
	}
	// No metadata (the build wrote none): the step fails.
	if _, _, code := runStep(t, wf, "Sign the pushed digests", checkoutDir(t), []string{fakeBin(t, map[string]string{"cosign": "exit 0"})}); code == 0 {
		t.Error("signing passed without build-metadata.json")
	}
}

// The run fails, naming the secret, when the registry's credentials are
// missing; ghcr.io needs none (GITHUB_TOKEN).
func TestPublishNeedsTheRegistrysSecrets(t *testing.T) {
	wf := readWorkflow(t, "publish.yml")
	for _, c := range []struct {
		env  []string
		want string // "" for success
	}{
		{[]string{"LOGIN=dockerhub", "DOCKERHUB_USERNAME=u", "DOCKERHUB_TOKEN=p"}, ""},
		{[]string{"LOGIN=dockerhub", "DOCKERHUB_USERNAME=u", "DOCKERHUB_TOKEN="}, "needs the secret DOCKERHUB_TOKEN"},
		{[]string{"LOGIN=other", "REGISTRY_USERNAME=", "REGISTRY_PASSWORD=p"}, "needs the secret REGISTRY_USERNAME"},
		{[]string{"LOGIN=other", "REGISTRY_USERNAME=u", "REGISTRY_PASSWORD=p"}, ""},
		{[]string{"LOGIN=ghcr"}, ""},
	} {
		script, shell := step(t, wf, "Registry credentials")
		argv := append(githubShell(t, wf, shell), "-c", script)
		out, errOut, code := runIn(t, t.TempDir(), append(c.env, "REGISTRY=r.example/x"), "", argv[0], argv[1:]...)
		if (c.want == "") != (code == 0) || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, %s%s", c.env, code, out, errOut)
		}
	}
}

// What the workflows must say, beyond what the steps run: triggers,
// permissions, concurrency, which login each registry gets.
func TestReleaseWorkflowShape(t *testing.T) {
	rel, pub := readWorkflow(t, "release.yml"), readWorkflow(t, "publish.yml")
	for _, want := range []string{
		"workflow_run:\n    workflows: [ci]\n    types: [completed]\n    branches: [main]",
		"github.event.workflow_run.conclusion == 'success'",
		"ref: ${{ github.event.workflow_run.head_sha }}",
		"prerelease: ${{ github.event.release.prerelease }}",
		"schedule:", "workflow_dispatch:",
	} {
		if !strings.Contains(rel, want) {
			t.Errorf("release.yml lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^  push:`).MatchString(rel) || strings.Contains(rel, "github.ref }}") {
		t.Error("release.yml publishes on push (before CI passed) or keys concurrency by ref")
	}
	// The jobs that can move latest-* share one group; dev has its own.
	groups := regexp.MustCompile(`(?m)^  ([a-z-]+):\n(?:    .*\n)*?    concurrency:\n      group: (\S+)\n      cancel-in-progress: false\n`).FindAllStringSubmatch(rel, -1)
	got := map[string]string{}
	for _, g := range groups {
		got[g[1]] = g[2]
	}
	if got["release"] == "" || got["release"] != got["rebuild"] || got["dev"] == "" || got["dev"] == got["release"] {
		t.Errorf("concurrency groups %v: want release and rebuild in one group, dev in another", got)
	}
	for _, want := range []string{
		"id-token: write", "packages: write",
		"steps.registry.outputs.login == 'dockerhub'", "steps.registry.outputs.login == 'ghcr'", "steps.registry.outputs.login == 'other'",
		"registry: ghcr.io\n          username: ${{ github.actor }}\n          password: ${{ github.token }}",
		"registry: ${{ steps.registry.outputs.host }}",
		`.github/scripts/release-plan.sh publish "$KIND" "$REF" "$PRERELEASE"`,
		"sigstore/cosign-installer@", "--metadata-file \"$GITHUB_WORKSPACE/build-metadata.json\"",
		"working-directory: ${{ steps.plan.outputs.src }}",
	} {
		if !strings.Contains(pub, want) {
			t.Errorf("publish.yml lacks %q", want)
		}
	}
	if n := strings.Count(rel, "id-token: write"); n != 3 {
		t.Errorf("release.yml grants id-token: write to %d jobs, want the three publish calls", n)
	}
}

// No workflow expands ${{ }} inside a run: script (an expression's value
// would become shell code); values go through env.
func TestNoExpressionsInScripts(t *testing.T) {
	for _, name := range []string{"release.yml", "publish.yml", "runner-bump.yml", "base-pin.yml", "ci.yml"} {
		lines := strings.Split(readWorkflow(t, name), "\n")
		for i := 0; i < len(lines); i++ {
			k := strings.TrimSpace(lines[i])
			if k == "run: |" {
				body, next := block(lines, i)
				if s := strings.Join(body, "\n"); strings.Contains(s, "${{") {
					t.Errorf("%s:%d: a run: script expands ${{ }}", name, i+1)
				}
				i = next - 1
			} else if strings.HasPrefix(k, "run: ") && strings.Contains(k, "${{") {
				t.Errorf("%s:%d: a run: line expands ${{ }}", name, i+1)
			}
		}
	}
}

// actionlint (with shellcheck on every run: script) passes on every
// workflow; scripts/test installs it in the cache this looks in.
func TestActionlint(t *testing.T) {
	bin, err := exec.LookPath("actionlint")
	if err != nil {
		cache := os.Getenv("WGR_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "worker-github_runner")
		}
		bin = filepath.Join(cache, "bin", "actionlint")
		if _, err := os.Stat(bin); err != nil {
			t.Skip("actionlint is not installed (scripts/test installs it before the tests)")
		}
	}
	cmd := exec.Command(bin)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("actionlint: %v\n%s", err, out)
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, planScript).CombinedOutput(); err != nil {
			t.Errorf("shellcheck release-plan.sh:\n%s", out)
		}
	}
}

// Dependabot keeps the Go modules and the actions current.
func TestDependabot(t *testing.T) {
	b, err := os.ReadFile("../../.github/dependabot.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"version: 2", "package-ecosystem: gomod", "package-ecosystem: github-actions", "- /.github/actions/runpod-runner"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("dependabot.yml lacks %q", want)
		}
	}
}

// A rebuild imports no build cache (the base image and packages are
// fetched anew); dev and release builds do.
func TestPublishBuildCache(t *testing.T) {
	wf := readWorkflow(t, "publish.yml")
	for kind, wantFrom := range map[string]bool{"dev": true, "release": true, "rebuild": false} {
		log := filepath.Join(t.TempDir(), "go.log")
		path := fakeBin(t, map[string]string{"go": `printf '%s\n' "$@" > "$GO_LOG"`})
		_, errOut, code := runStep(t, wf, "Build and publish", t.TempDir(), []string{path, "GO_LOG=" + log, "KIND=" + kind, "GITHUB_WORKSPACE=/ws"})
		b, _ := os.ReadFile(log)
		args := string(b)
		if code != 0 || !strings.HasPrefix(args, "run\n./cmd/imagegen\nbuild\n--push\n") || !strings.Contains(args, "--metadata-file\n/ws/build-metadata.json\n") ||
			!strings.Contains(args, "--cache-to\n{image}:cache-{variant}\n") || strings.Contains(args, "--cache-from") != wantFrom {
			t.Errorf("%s: exit %d (%s), go got:\n%s", kind, code, errOut, args)
		}
	}
}

// The major tag (v1) follows the newest non-pre-release v1.x.y whose
// action VERSION matches; an older release leaves it.
func TestMoveTheMajorTag(t *testing.T) {
	wf := readWorkflow(t, "release.yml")
	r := newRepo(t)
	os.MkdirAll(filepath.Join(r.path, ".github", "actions", "runpod-runner"), 0o755)
	setVersion := func(v string) {
		os.WriteFile(filepath.Join(r.path, ".github", "actions", "runpod-runner", "VERSION"), []byte(v+"\n"), 0o644)
		r.commit("2.337.0", sumOld, v)
		r.git("tag", v)
	}
	setVersion("v1.0.0")
	setVersion("v1.2.0")
	r.git("checkout", "-q", "v1.0.0")
	r.git("tag", "v1.1.0")
	for _, c := range []struct {
		tag     string
		ok      bool
		v1After string // the tag v1 points at in origin afterwards
	}{
		{"v1.1.0", false, ""},      // VERSION says v1.0.0
		{"v1.2.0", true, "v1.2.0"}, // checked out below
		{"v1.0.0", true, "v1.2.0"}, // older: v1 stays
	} {
		r.git("checkout", "-q", c.tag)
		_, errOut, code := runStep(t, wf, "Move the major tag", r.path, append(r.env, "TAG="+c.tag))
		if (code == 0) != c.ok {
			t.Errorf("%s: exit %d %s", c.tag, code, errOut)
		}
		got, _, _ := runIn(t, r.path, r.env, "", "git", "ls-remote", "origin", "refs/tags/v1")
		want := ""
		if c.v1After != "" {
			want = r.git("rev-parse", c.v1After+"^{commit}")
		}
		first := ""
		if f := strings.Fields(got); len(f) > 0 {
			first = f[0]
		}
		if first != want {
			t.Errorf("%s: origin's v1 is %q, want %s (%s)", c.tag, got, c.v1After, want)
		}
	}
}

// Every action a workflow or the composite action takes from another
// repository is pinned by its full commit SHA, with the version it is in a
// comment (Dependabot updates both): a moved tag cannot change what runs
// with the workflows' tokens.
func TestActionsPinnedBySHA(t *testing.T) {
	uses := regexp.MustCompile(`^\s*(?:-\s+)?uses:\s*(\S+)(.*)$`)
	pinned := regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$`)
	version := regexp.MustCompile(`^\s+# v[0-9]+\.[0-9]+\.[0-9]+$`)
	files, _ := filepath.Glob(workflows + "*.yml")
	files = append(files, "../../.github/actions/runpod-runner/action.yml")
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range strings.Split(string(b), "\n") {
			m := uses.FindStringSubmatch(line)
			if m == nil || strings.HasPrefix(m[1], "./") {
				continue
			}
			seen++
			if !pinned.MatchString(m[1]) || !version.MatchString(m[2]) {
				t.Errorf("%s:%d: %q is not pinned as owner/repo@<40-hex commit> # vX.Y.Z", filepath.Base(f), n+1, strings.TrimSpace(line))
			}
		}
	}
	if seen < 10 {
		t.Errorf("found only %d remote actions: the scan is broken", seen)
	}
}

// pinGo is a fake go for the pin steps: `imagegen pin` prints what moved,
// or fails as with a registry unreachable when FAKE_PIN=fail; `pin --help`
// fails when FAKE_PIN=none (a release older than the pin command). Each
// call is logged to $FAKE_GO_LOG.
func pinGo(t *testing.T) []string {
	bin := t.TempDir()
	script := `#!/bin/sh
echo "$*" >> "$FAKE_GO_LOG"
case "$*" in
"run ./cmd/imagegen pin --help") if [ "$FAKE_PIN" = none ]; then echo 'unknown command "pin"' >&2; exit 2; fi ;;
"run ./cmd/imagegen pin"|"run ./cmd/imagegen --var RELEASE=v0.0.0 pin")
  if [ "$FAKE_PIN" = fail ]; then echo 'imagegen: pin: ubuntu:24.04: registry-1.docker.io not reachable' >&2; exit 1; fi
  echo 'ubuntu:24.04: sha256:aaaaaaaaaaaa… → sha256:bbbbbbbbbbbb…' ;;
"run ./cmd/imagegen render") echo 'wrote dockerfiles/cpu.Dockerfile' ;;
*) echo "fake go: unexpected $*" >&2; exit 9 ;;
esac
`
	os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755)
	return []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "RUNNER_TEMP=" + t.TempDir()}
}

// base-pin's step fails when pin fails, and hands the pull request what
// moved.
func TestBasePinStepFailsLoudly(t *testing.T) {
	wf := readWorkflow(t, "base-pin.yml")
	log := filepath.Join(t.TempDir(), "go.log")
	env := append(pinGo(t), "FAKE_GO_LOG="+log)
	out, errOut, code := runStep(t, wf, "Pin the images to their digests", t.TempDir(), env)
	if code != 0 || !strings.Contains(out, "changes<<") || !strings.Contains(out, "ubuntu:24.04: sha256:aaaa") {
		t.Errorf("pin: exit %d, output %q, %s", code, out, errOut)
	}
	if _, errOut, code := runStep(t, wf, "Pin the images to their digests", t.TempDir(), append(env, "FAKE_PIN=fail")); code == 0 {
		t.Errorf("pin failing: exit 0 %s", errOut)
	}
}

// A rebuild re-pins the bases to their current digests before it builds;
// a release older than the pin command builds by tag; a failing pin fails
// the run (no rebuild on stale bases).
func TestRebuildRepinsTheBases(t *testing.T) {
	wf := readWorkflow(t, "publish.yml")
	if !strings.Contains(wf, "if: steps.plan.outputs.publish == 'true' && inputs.kind == 'rebuild'") ||
		strings.Index(wf, "name: Fresh base pins") > strings.Index(wf, "name: Build and publish") {
		t.Fatal("publish.yml: the Fresh base pins step must run for rebuilds only, before Build and publish")
	}
	for _, tc := range []struct {
		fake     string
		wantCode int
		wantPin  bool
	}{{"", 0, true}, {"none", 0, false}, {"fail", 1, true}} {
		log := filepath.Join(t.TempDir(), "go.log")
		_, errOut, code := runStep(t, wf, "Fresh base pins", t.TempDir(), append(pinGo(t), "FAKE_GO_LOG="+log, "FAKE_PIN="+tc.fake))
		calls, _ := os.ReadFile(log)
		pinned := strings.Contains(string(calls), "run ./cmd/imagegen pin\n")
		if (code != 0) != (tc.wantCode != 0) || pinned != tc.wantPin {
			t.Errorf("FAKE_PIN=%q: exit %d, pin called %v (calls %q) %s", tc.fake, code, pinned, calls, errOut)
		}
	}
}
