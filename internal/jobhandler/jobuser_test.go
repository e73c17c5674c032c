package jobhandler

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/fitness"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// sudoProbe is a workflow step that records, in <dumpDir>/sudoers.seen,
// what it finds at the sudoers file: its mode and owner, or "absent".
func sudoProbe(e *env) map[string]any {
	file := filepath.Join(e.handler.SudoersDir, sudoersFile)
	seen := filepath.Join(e.dumpDir, "sudoers.seen")
	return map[string]any{"step_script": fmt.Sprintf(`stat -c '%%a %%u:%%g' %q > %q 2>/dev/null || echo absent > %q`, file, seen, seen)}
}

// sudoEnv is a JIT-only endpoint (no GitHub credential) whose jobs' step
// records what it finds at the sudoers file; sudo says whether
// RUNNER_SUDO is on.
func sudoEnv(t *testing.T, sudo bool) *env {
	t.Helper()
	e := newEnv(t, nil)
	noGitHubEnv(e)
	if sudo {
		e.env[EnvSudo] = "1"
	}
	writeBehaviour(t, e, sudoProbe(e))
	return e
}

// writeBehaviour scripts e's fake runner anew.
func writeBehaviour(t *testing.T, e *env, b map[string]any) {
	t.Helper()
	if _, ok := b["dump"]; !ok {
		b["dump"] = filepath.Join(e.dumpDir, "dump.json")
	}
	raw, _ := json.Marshal(b)
	if err := os.WriteFile(filepath.Join(e.root, "fake-behaviour.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// seen is what the job's step found at the sudoers file.
func (e *env) seen(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dumpDir, "sudoers.seen"))
	if err != nil {
		t.Fatalf("the job's step recorded nothing: %v", err)
	}
	return strings.TrimSpace(string(b))
}

func (e *env) sudoersLeft(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(e.handler.SudoersDir, sudoersFile)); err == nil {
		t.Errorf("%s left behind after the job", sudoersFile)
	}
	ents, _ := os.ReadDir(e.handler.SudoersDir)
	for _, d := range ents {
		t.Errorf("%s left in the sudoers folder", d.Name())
	}
}

// With RUNNER_SUDO on a JIT-only endpoint, the job's user finds a
// root-owned 0440 sudoers file while its job runs, and none after.
func TestSudoForJITJob(t *testing.T) {
	e := sudoEnv(t, true)
	jit, _ := mintJIT(t, e, "orgs/my-org", "minted-sudo")
	res, err, rec := e.run(t, context.Background(), map[string]any{"jitconfig": jit})
	if err != nil || !res.JobRan {
		t.Fatalf("%v %+v\n%s", err, res, e.logs.String())
	}
	if got := e.seen(t); got != "440 0:0" {
		t.Errorf("the job saw the sudoers file as %q, want \"440 0:0\"", got)
	}
	e.sudoersLeft(t)
	e.assertClean(t, rec, jit)
	if !strings.Contains(e.logs.String(), "may use sudo") {
		t.Errorf("the worker did not log that the job may use sudo:\n%s", e.logs.String())
	}
}

// The sudoers file says exactly that the account may run anything as
// anyone without a password, and nothing of a partly written file is
// ever under a name sudo reads.
func TestSudoersFileContent(t *testing.T) {
	dir := t.TempDir()
	if err := writeSudoers(dir, "runner"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, sudoersFile)
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "runner ALL=(ALL) NOPASSWD:ALL\n" {
		t.Fatalf("%q %v", b, err)
	}
	fi, _ := os.Stat(p)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o440 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("mode %v owner %d:%d", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files %v", ents)
	}
	for _, bad := range []string{"", "root", "runner ALL", "a\nb", "-x", strings.Repeat("a", 40)} {
		if err := writeSudoers(dir, bad); err == nil {
			t.Errorf("account %q accepted", bad)
		}
	}
	if err := writeSudoers(filepath.Join(dir, "missing"), "runner"); err == nil || !strings.Contains(err.Error(), "sudo") {
		t.Errorf("no sudoers folder: %v", err)
	}
}

// With RUNNER_SUDO off, a sudoers file an earlier job left (a reused
// container) is removed before the runner starts.
func TestSudoOffRemovesFile(t *testing.T) {
	e := sudoEnv(t, false)
	if err := os.WriteFile(filepath.Join(e.handler.SudoersDir, sudoersFile), []byte("x ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	jit, _ := mintJIT(t, e, "orgs/my-org", "minted-nosudo")
	if _, err, _ := e.run(t, context.Background(), map[string]any{"jitconfig": jit}); err != nil {
		t.Fatalf("%v\n%s", err, e.logs.String())
	}
	if got := e.seen(t); got != "absent" {
		t.Errorf("the job saw a sudoers file: %q", got)
	}
	e.sudoersLeft(t)
}

// A runner that never gets a job, or fails, leaves no sudoers file
// either.
func TestSudoNeverLeftBehind(t *testing.T) {
	for name, b := range map[string]map[string]any{"idle": {"mode": "idle"}, "exit 1": {"mode": "exit", "exit": 1}} {
		t.Run(name, func(t *testing.T) {
			e := sudoEnv(t, true)
			writeBehaviour(t, e, b)
			jit, _ := mintJIT(t, e, "orgs/my-org", "minted-sudo-fail")
			if _, err, _ := e.run(t, context.Background(), map[string]any{"jitconfig": jit, "idle_timeout": 1}); err == nil {
				t.Fatal("the job succeeded")
			}
			e.sudoersLeft(t)
		})
	}
}

// RUNNER_SUDO on an endpoint that holds a GitHub credential is refused at
// job start (and said at the worker's start): a job that may use sudo
// could read the credential from the worker.
func TestSudoRefusedWithEndpointCredential(t *testing.T) {
	for _, k := range []string{jobapi.EnvPAT, jobapi.EnvAppID, jobapi.EnvAppPrivateKey} {
		t.Run(k, func(t *testing.T) {
			e := sudoEnv(t, true)
			e.env[k] = "something-set-here"
			jit, _ := mintJIT(t, e, "orgs/my-org", "minted-refused")
			res, err, _ := e.run(t, context.Background(), map[string]any{"jitconfig": jit})
			if err == nil || !strings.Contains(err.Error(), EnvSudo) || !strings.Contains(err.Error(), k) {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), "something-set-here") {
				t.Error("the credential's value is in the error")
			}
			if res == nil || res.RunnerLeft == nil {
				t.Errorf("result %+v: the minted runner is left to the minting side", res)
			}
			if _, err := os.Stat(filepath.Join(e.dumpDir, "sudoers.seen")); err == nil {
				t.Error("the runner ran")
			}
			e.sudoersLeft(t)
			w := StartupWarnings(func(v string) string { return e.env[v] })
			if !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, EnvSudo) && strings.Contains(s, k) }) {
				t.Errorf("start-up warnings %q", w)
			}
		})
	}
}

// While RUNNER_SUDO is on, jobs that carry a GitHub credential are
// refused before any GitHub call: only jobs with a JIT config run.
func TestSudoRefusesCredentialJobs(t *testing.T) {
	e := sudoEnv(t, true)
	for _, mode := range []string{"jit", "token"} {
		in := map[string]any{"github_org": "my-org", "github_pat": pat, "github_api_url": e.gh.URL, "mode": mode}
		e.env[EnvTestLoopbackHTTP] = "1"
		_, err, rec := e.run(t, context.Background(), in)
		if err == nil || !strings.Contains(err.Error(), EnvSudo) || !strings.Contains(err.Error(), "jitconfig") {
			t.Errorf("%s: err = %v", mode, err)
		}
		e.assertClean(t, rec)
	}
	if n := len(e.gh.Requests()); n != 0 {
		t.Errorf("%d GitHub requests", n)
	}
	e.sudoersLeft(t)
}

// A job user that may not use sudo gets no warning; a worker with
// RUNNER_SUDO on says so at its start.
func TestSudoStartupWarning(t *testing.T) {
	if w := StartupWarnings(func(string) string { return "" }); len(w) != 0 {
		t.Errorf("warnings %q", w)
	}
	w := StartupWarnings(func(k string) string { return map[string]string{EnvSudo: "1"}[k] })
	if len(w) != 1 || !strings.Contains(w[0], "sudo") {
		t.Errorf("warnings %q", w)
	}
}

// An endpoint variable that still holds RunPod's secret placeholder (the
// secret was never created) fails the job saying so, before any GitHub
// call, not with GitHub's 401.
func TestSecretPlaceholder(t *testing.T) {
	for _, tc := range []struct{ name, key, value, want string }{
		{"pat", jobapi.EnvPAT, "{{ RUNPOD_SECRET_gh_pat }}", "the endpoint's GITHUB_PAT is the RunPod secret placeholder {{ RUNPOD_SECRET_gh_pat }}: create the secret gh_pat"},
		{"app key", jobapi.EnvAppPrivateKey, "{{RUNPOD_SECRET_app-key}}", "the endpoint's GITHUB_APP_PRIVATE_KEY is the RunPod secret placeholder {{ RUNPOD_SECRET_app-key }}: create the secret app-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tc.key == jobapi.EnvAppPrivateKey {
				useApp(t, e)
			}
			e.env[tc.key] = tc.value
			_, err, _ := e.run(t, context.Background(), map[string]any{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if n := len(e.gh.Requests()); n != 0 {
				t.Errorf("%d GitHub requests", n)
			}
			// A job that brings its own credential does not need the endpoint's.
			res, err, _ := e.run(t, context.Background(), map[string]any{"github_pat": pat, "github_api_url": e.gh.URL, "github_org": "my-org"})
			if err != nil || !res.JobRan {
				t.Errorf("a job with its own PAT: %v", err)
			}
		})
	}
}

// Every variable the worker reads is a job input's or a listed setting:
// the fitness checks read the image's WORKER_FLAVOUR and
// WORKER_CUDA_VERSION, and hub.json may offer them.
func TestSettingsListEveryVariableRead(t *testing.T) {
	known := map[string]bool{}
	for _, f := range Fields {
		known[f.Env] = true
	}
	for _, k := range Settings {
		known[k] = true
	}
	for _, k := range []string{fitness.EnvCheck, fitness.EnvMinDisk, fitness.EnvMinMemory, fitness.EnvGPUCount, fitness.EnvMinGPUMemory,
		fitness.EnvFlavour, fitness.EnvCUDA, EnvSudo} {
		if !known[k] {
			t.Errorf("%s is read but not in Settings", k)
		}
	}
}

// A job that creates the job-completed marker itself (the markers' folder
// is the runner account's) and then kills its listener does not make the
// result say GitHub removed the runner: the minted runner is reported
// left. Nor can it write a "completed" line into the listener's output:
// the worker (root) made that pipe, so the runner account cannot reopen
// it through /proc/<pid>/fd/1.
func TestJobCannotForgeCompletion(t *testing.T) {
	killListener := `read -r _ _ _ pp _ < /proc/$PPID/stat; `
	for name, script := range map[string]string{
		"marker": `: > "$(dirname "$ACTIONS_RUNNER_HOOK_JOB_STARTED")/markers/completed"; sleep 0.6; ` + killListener + `kill -KILL $pp`,
		"output": killListener + `{ echo "Job test-job completed with result: Succeeded" > /proc/$pp/fd/1; } 2>/dev/null; sleep 0.3; kill -KILL $pp`,
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, map[string]any{"job_seconds": 5, "step_script": script})
			noGitHubEnv(e)
			jit, id := mintJIT(t, e, "orgs/my-org", "minted-forge")
			res, err, _ := e.run(t, context.Background(), map[string]any{"jitconfig": jit})
			if err == nil {
				t.Fatalf("the job succeeded: %+v", res)
			}
			if res == nil || res.RunnerLeft == nil || res.RunnerLeft.ID != id || res.RunnerRemoved != RemovedByMinter {
				t.Errorf("result %+v: the job's forgery hid the runner left registered\n%v", res, err)
			}
		})
	}
}

// Where visudo is installed, the rule is checked with it before it is
// put in place; a rule it refuses is never put in place.
func TestSudoersCheckedWithVisudo(t *testing.T) {
	bin := t.TempDir()
	args := filepath.Join(bin, "args")
	visudo := filepath.Join(bin, "visudo")
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	for _, ok := range []bool{true, false} {
		exit := map[bool]string{true: "0", false: "1"}[ok]
		script := "#!/bin/sh\necho \"$@\" > " + args + "\necho 'parse error' >&2\nexit " + exit + "\n"
		if err := os.WriteFile(visudo, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		err := writeSudoers(dir, "runner")
		got, _ := os.ReadFile(args)
		if !strings.HasPrefix(string(got), "-c -q -f "+dir+"/.wgr-runner.tmp-") {
			t.Errorf("visudo ran with %q", got)
		}
		_, statErr := os.Stat(filepath.Join(dir, sudoersFile))
		if ok != (err == nil) || ok != (statErr == nil) {
			t.Errorf("visudo exits %s: error %v, file %v", exit, err, statErr)
		}
		if !ok && !strings.Contains(fmt.Sprint(err), "visudo -c refused it") {
			t.Errorf("error %v", err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) > 1 || !ok && len(ents) != 0 {
			t.Errorf("files left: %v", ents)
		}
	}
}
