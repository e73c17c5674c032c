package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

// The composite action's flow, as its steps run it, against a fake GitHub
// and the fake RunPod platform (its endpoint API bridged to the workers'
// side): `worker dispatch start` mints the runner with the workflow's
// PAT and sends RunPod only its JIT config; a real worker binary with no
// GitHub credential takes the job and runs the (fake) runner; the job
// meant for it runs, a runs-on: self-hosted job of the same organisation
// cannot take it; `worker dispatch stop` leaves nothing behind. Needs no
// build environment.
const (
	flowPAT    = "ghp_ACTIONFLOW0123456789abcdefghijklmn"
	flowRPKey  = "rpa_ACTIONFLOWKEY0123456789"
	flowEP     = "epflow"
	flowOrg    = "octo"
	flowLabel  = "runpod-77-1-e2e"
	flowWaitUp = 60 * time.Second
)

type actionFlow struct {
	t          *testing.T
	worker     string // the worker binary (dispatch included)
	runnerRoot string
	dump       string // the runner's environment, as a workflow job saw it
	gh         *githubtest.GitHub
	p          *runpodtest.Platform
	ep         *runpodtest.Endpoint
	logs       []string // everything every process printed
}

func newActionFlow(t *testing.T) *actionFlow {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	f := &actionFlow{t: t, worker: filepath.Join(dir, "worker"), runnerRoot: filepath.Join(dir, "actions-runner"), dump: filepath.Join(dir, "dump.json")}
	for bin, pkg := range map[string]string{f.worker: "../../cmd/worker", filepath.Join(f.runnerRoot, "bin", "Runner.Listener"): "../listener/fakerunner"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	behaviour, _ := json.Marshal(map[string]any{"mode": "job", "job_seconds": 0.2, "dump": f.dump})
	os.WriteFile(filepath.Join(f.runnerRoot, "fake-behaviour.json"), behaviour, 0o644)
	f.gh = githubtest.New(flowPAT)
	t.Cleanup(f.gh.Close)
	f.p = runpodtest.New()
	t.Cleanup(f.p.Close)
	f.ep = f.p.Endpoint(flowEP, flowRPKey)
	return f
}

// startWorker starts the worker as RunPod would, with the endpoint's
// environment: no GitHub credential in it.
func (f *actionFlow) startWorker(extra ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(f.worker)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RUNNER_ROOT=" + f.runnerRoot, "RUNNER_ALLOW_ROOT=1"}
	for k, v := range f.ep.Env("pod-flow") {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, extra...)
	for _, kv := range cmd.Env {
		if strings.HasPrefix(kv, "GITHUB_") || strings.Contains(kv, flowPAT) {
			f.t.Fatalf("the worker's environment has %s", strings.SplitN(kv, "=", 2)[0])
		}
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Dir = f.t.TempDir()
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		f.logs = append(f.logs, logs.String())
	})
	return cmd, &logs
}

// dispatch runs `worker dispatch ...` as the action's step does.
func (f *actionFlow) dispatch(args ...string) (code int, stderr string, outputs map[string]string) {
	out := filepath.Join(f.t.TempDir(), "github_output")
	cmd := exec.Command(f.worker, append([]string{"dispatch"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RUNPOD_API_KEY=" + flowRPKey, "GITHUB_PAT=" + flowPAT,
		"RUNPOD_API_URL=" + f.ep.URL(), "GITHUB_API_URL=" + f.gh.URL, "WGR_TEST_ALLOW_HTTP_LOOPBACK=1",
		"GITHUB_OUTPUT=" + out, "GITHUB_RUN_ID=77", "GITHUB_RUN_ATTEMPT=1"}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	outputs = map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			outputs[k] = v
		}
	}
	f.logs = append(f.logs, so.String(), se.String(), string(b))
	return code, se.String(), outputs
}

func (f *actionFlow) start(extra ...string) (int, string, map[string]string) {
	return f.dispatch(append([]string{"start", "--endpoint", flowEP, "--github-org", flowOrg, "--label", flowLabel,
		"--runner-user", "root", "--idle-timeout", "1m", "--job-timeout", "5m"}, extra...)...)
}

// nothingLeft: no runner on GitHub, no RunPod job queued or running.
func (f *actionFlow) nothingLeft() {
	f.t.Helper()
	if rs := f.gh.Runners(); len(rs) != 0 {
		f.t.Errorf("runners left on GitHub: %+v", rs)
	}
	for _, j := range f.ep.Jobs() {
		if !j.Status.Terminal() && !j.Expired {
			f.t.Errorf("RunPod job left %s: %s", j.ID, j.Status)
		}
	}
}

// noSecrets: the PAT and the RunPod API key appear in no log, output,
// job input, runner environment or platform request; the JIT config
// travels only in the job input.
func (f *actionFlow) noSecrets() {
	f.t.Helper()
	var places []string
	for _, j := range f.ep.Jobs() {
		places = append(places, string(j.Input))
	}
	inputs := len(places)
	places = append(places, f.logs...)
	places = append(places, strings.Join(f.p.RequestLog, "\n"))
	if b, err := os.ReadFile(f.dump); err == nil {
		places = append(places, string(b))
	}
	for i, s := range places {
		for _, secret := range []string{flowPAT, flowRPKey} {
			if strings.Contains(s, secret) {
				f.t.Errorf("a credential appears in %s", place(i, inputs))
			}
		}
		for _, jit := range f.gh.Issued() {
			if i >= inputs && strings.Contains(s, jit) {
				f.t.Errorf("a JIT config appears in %s", place(i, inputs))
			}
		}
	}
}

func place(i, inputs int) string {
	if i < inputs {
		return fmt.Sprintf("RunPod job input %d", i)
	}
	return fmt.Sprintf("log or output %d", i-inputs)
}

func TestActionFlow(t *testing.T) {
	f := newActionFlow(t)
	t.Run("start, one job, stop", f.happyPath)
	t.Run("no capacity", f.noCapacity)
	t.Run("worker refuses the config", f.workerFails)
	t.Run("stop after RunPod forgot the job", f.stopForgotten)
	f.noSecrets()
}

func (f *actionFlow) happyPath(t *testing.T) {
	f.t = t
	f.gh.QueueJob("elsewhere-in-the-org", "self-hosted") // another workflow's job
	worker, logs := f.startWorker()
	code, stderr, out := f.start("--startup-timeout", flowWaitUp.String())
	if code != 0 {
		t.Fatalf("start: exit %d\n%s\nworker:\n%s", code, stderr, logs)
	}
	t.Logf("start:\n%s", stderr)
	var ids []int64
	json.Unmarshal([]byte(out["runner-ids"]), &ids)
	if out["label"] != flowLabel || out["labels"] != `["`+flowLabel+`"]` || len(ids) != 1 || out["job-id"] == "" || out["scope"] != flowOrg {
		t.Fatalf("outputs %v", out)
	}
	r, ok := f.gh.Runner(ids[0])
	if !ok || r.Status != "online" {
		t.Fatalf("start returned before GitHub listed runner %d online: %+v", ids[0], r)
	}
	job, _ := f.ep.Job(out["job-id"])
	var in map[string]any
	json.Unmarshal(job.Input, &in)
	if len(in) != 5 || in["jitconfig"] == nil || in["runner_name"] != flowLabel {
		t.Errorf("the RunPod job input is %v: want only jitconfig, runner_name and the worker's settings", keys(in))
	}
	// The workflow's job, runs-on: ${{ needs.start-runner.outputs.label }}.
	f.gh.QueueJob("intended", out["label"])
	deadline := time.Now().Add(30 * time.Second)
	for !f.gh.Jobs()[1].Done {
		if time.Now().After(deadline) {
			t.Fatalf("the intended job never ran: %+v\nworker:\n%s", f.gh.Jobs(), logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if jobs := f.gh.Jobs(); jobs[0].RunnerID != 0 || jobs[1].RunnerID != ids[0] {
		t.Errorf("jobs %+v: the self-hosted job must not go to the runner", jobs)
	}
	if f.gh.CanAssign([]string{"self-hosted"}, ids[0]) || f.gh.CanAssign([]string{"self-hosted", flowLabel}, ids[0]) {
		t.Errorf("the runner's labels %v let a self-hosted job take it", r.Labels)
	}
	if !f.ep.WaitStatus(out["job-id"], 30*time.Second, jobapi.Completed) {
		j, _ := f.ep.Job(out["job-id"])
		t.Fatalf("RunPod job %+v did not complete\nworker:\n%s", j, logs)
	}
	done := make(chan error, 1)
	go func() { done <- worker.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the worker did not exit after its job\n%s", logs)
	}
	code, stderr, _ = f.dispatch("stop", "--endpoint", flowEP, "--github-org", flowOrg, "--scope", out["scope"], "--job-ids", out["job-ids"], "--runner-ids", out["runner-ids"])
	if code != 0 || !strings.Contains(stderr, "already ended (COMPLETED)") || !strings.Contains(stderr, "GitHub already removed it") {
		t.Errorf("stop: exit %d\n%s", code, stderr)
	}
	t.Logf("stop:\n%s", stderr)
	f.nothingLeft()
	if b, err := os.ReadFile(f.dump); err != nil || strings.Contains(string(b), "GITHUB_PAT") {
		t.Errorf("the runner's environment (%v):\n%s", err, b)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// No worker takes the job: start fails within its startup timeout,
// saying so; the RunPod job is cancelled and the runner deleted.
func (f *actionFlow) noCapacity(t *testing.T) {
	f.t = t
	began := time.Now()
	code, stderr, out := f.start("--label", "runpod-77-1-nocap", "--startup-timeout", "3s")
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("start took %v with a 3s startup timeout", took)
	}
	// The ids were written as soon as they existed (for a stop job after
	// a cancelled start); status says start did not finish.
	if code != 1 || !strings.Contains(stderr, "IN_QUEUE") || !strings.Contains(stderr, "no capacity") || !strings.Contains(stderr, "cancelled") ||
		out["status"] != "starting" || out["runner-ids"] == "" || out["scope"] != flowOrg {
		t.Fatalf("exit %d outputs %v\n%s", code, out, stderr)
	}
	t.Logf("start:\n%s", stderr)
	f.nothingLeft()
}

// The worker refuses the job (this endpoint takes runners of another
// organisation only): start fails at once with the worker's error and
// cleans up.
func (f *actionFlow) workerFails(t *testing.T) {
	f.t = t
	_, logs := f.startWorker("ALLOWED_GITHUB_SCOPES=some-other-org")
	began := time.Now()
	code, stderr, _ := f.start("--label", "runpod-77-1-refused", "--startup-timeout", flowWaitUp.String())
	if code != 1 || !strings.Contains(stderr, "FAILED") || !strings.Contains(stderr, "ALLOWED_GITHUB_SCOPES") || time.Since(began) > 30*time.Second {
		t.Fatalf("exit %d after %v\n%s\nworker:\n%s", code, time.Since(began), stderr, logs)
	}
	t.Logf("start:\n%s", stderr)
	f.nothingLeft()
}

// stop for a job RunPod no longer knows (its ttl passed) and a runner
// GitHub already removed succeeds.
func (f *actionFlow) stopForgotten(t *testing.T) {
	f.t = t
	code, stderr, out := f.dispatch("stop", "--endpoint", flowEP, "--github-org", flowOrg, "--job-ids", `["job-long-gone"]`, "--runner-ids", "[424242]")
	if code != 0 || !strings.Contains(stderr, "no longer knows it") || !strings.Contains(stderr, "already removed") || out["status"] != "stopped" {
		t.Fatalf("exit %d %v\n%s", code, out, stderr)
	}
}
