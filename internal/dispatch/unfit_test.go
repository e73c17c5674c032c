package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	fleetpkg "github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest/fleet"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

const unfitKey = "rpa_UNFITKEY0123"

// fleet is a RunPod endpoint (runpodtest's fake) whose workers run the
// real job loop (runpodtest/fleet), so a job's error is the worker's own,
// with the fake GitHub the runners register with.
type fleet struct {
	p  *runpodtest.Platform
	e  *runpodtest.Endpoint
	gh *githubtest.GitHub
	w  *fleetpkg.Fleet
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	f := &fleet{p: runpodtest.New(), gh: githubtest.New(testPAT)}
	f.e = f.p.Endpoint("ep1", unfitKey)
	t.Cleanup(func() { f.p.Close(); f.gh.Close() })
	return f
}

// start runs the endpoint's workers with this handler until the test ends.
func (f *fleet) start(t *testing.T, handle fleetpkg.Handle) {
	f.w = fleetpkg.Start(t, f.p, f.e, handle)
}

// online is what a fit worker does with a JIT config: its runner connects.
func (f *fleet) online(in jobapi.Input) (any, error) {
	for _, r := range f.gh.Registered() {
		if in.RunnerName != nil && r.Name == *in.RunnerName {
			f.gh.SetRunner(r.ID, "online", false)
			return map[string]any{"runner_name": r.Name}, nil
		}
	}
	return nil, errors.New("no such runner")
}

func (f *fleet) launcher(t *testing.T, progress *strings.Builder) *Launcher {
	t.Helper()
	c, err := GitHubClient(context.Background(), "octo", Credential{PAT: secret.New(testPAT)}, github.Options{APIURL: f.gh.URL, TestOnlyAllowLoopbackHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Backoff, c.MaxWait = time.Millisecond, 10*time.Millisecond
	return &Launcher{
		RunPod:   &Client{APIURL: f.e.URL(), Endpoint: "ep1", APIKey: secret.New(unfitKey), HTTP: f.p.Client(), Attempts: 2, Backoff: time.Millisecond},
		GitHub:   c,
		Progress: progress,
		PollMin:  5 * time.Millisecond, PollMax: 20 * time.Millisecond, CleanupTimeout: 5 * time.Second,
	}
}

// brokenHost is the worker's error on a host that cannot run jobs: its
// job fails in the unfit form with stopPod, and RunPod replaces it.
func brokenHost() error {
	return fmt.Errorf("before the runner started: %w", &runpod.UnfitError{Message: "host unfit: no NVIDIA device in /dev",
		Detail: map[string]any{"gpus": []any{}, "problems": []string{"no NVIDIA device in /dev"}}})
}

// tooSmall is the error of a sound worker without the job's GPUs: it
// stays, and takes the next job.
func tooSmall() error {
	return &runpod.UnfitError{Message: "this worker cannot run the job: 1 GPUs, the job wants 2", KeepWorker: true,
		Detail: map[string]any{"gpus": []any{map[string]any{"name": "NVIDIA L4"}}, "problems": []string{"1 GPUs, the job wants 2"}}}
}

var unfitOpts = JITOptions{Labels: []string{"runpod-7-1-unfit"}, IdleTimeout: 5 * time.Minute, JobTimeout: time.Hour,
	StartupTimeout: 30 * time.Second, UnfitRetries: 2}

// A worker that finds its host unfit fails the job before its runner
// starts, so the runner's JIT config is unused: Start submits the same
// input again, another worker takes it, and the runner comes online.
func TestStartRetriesAnUnfitWorkerOnAnother(t *testing.T) {
	f := newFleet(t)
	f.start(t, func(n int, pod string, in jobapi.Input) (any, error) {
		if n == 1 {
			return nil, brokenHost()
		}
		return f.online(in)
	})
	var progress strings.Builder
	rs, err := f.launcher(t, &progress).Start(context.Background(), unfitOpts)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, progress.String())
	}
	jobs := f.e.Jobs()
	if len(jobs) != 2 || jobs[0].Status != jobapi.Failed || jobs[0].WorkerID != "pod-1" || jobs[1].WorkerID != "pod-2" {
		t.Fatalf("RunPod jobs %+v, want the first failed on pod-1 and a second taken by pod-2", jobs)
	}
	if string(jobs[0].Input) != string(jobs[1].Input) || !strings.Contains(string(jobs[1].Input), f.gh.Issued()[0]) {
		t.Errorf("the second job's input differs from the first's:\n%s\n%s", jobs[0].Input, jobs[1].Input)
	}
	if len(rs) != 1 || rs[0].JobID != jobs[1].ID {
		t.Errorf("runners %+v, want the second job's id %s", rs, jobs[1].ID)
	}
	if r, ok := f.gh.Runner(rs[0].RunnerID); !ok || r.Status != "online" {
		t.Errorf("runner %+v, want it online", r)
	}
	out := progress.String()
	t.Log(out)
	if !strings.Contains(out, "no NVIDIA device in /dev") || !strings.Contains(out, "pod-1") || !strings.Contains(out, "1 of 2") {
		t.Errorf("progress does not say which worker was unfit, why, and the retry:\n%s", out)
	}
	if strings.Contains(out, f.gh.Issued()[0]) {
		t.Error("the JIT config leaked into the progress")
	}
}

// A worker that lacks the job's GPUs every time: Start gives up after
// UnfitRetries more jobs, with the problems, and leaves nothing behind.
func TestStartGivesUpOnUnfitWorkers(t *testing.T) {
	f := newFleet(t)
	f.start(t, func(n int, pod string, in jobapi.Input) (any, error) { return nil, tooSmall() })
	var progress strings.Builder
	_, err := f.launcher(t, &progress).Start(context.Background(), unfitOpts)
	if err == nil {
		t.Fatal("start succeeded")
	}
	msg := err.Error()
	t.Logf("%v\n%s", err, progress.String())
	if !strings.Contains(msg, "1 GPUs, the job wants 2") || !strings.Contains(msg, "each of 3 attempts") || !strings.Contains(msg, "pod-1") {
		t.Errorf("error does not give the attempts and the last report's problems: %v", err)
	}
	if n := len(f.e.Jobs()); n != 3 || f.w.Runs() != 3 {
		t.Errorf("%d RunPod jobs, %d runs; want 3 (the first and 2 retries)", n, f.w.Runs())
	}
	if f.e.Live() != 0 {
		t.Errorf("%d RunPod jobs still live", f.e.Live())
	}
	if len(f.gh.Runners()) != 0 || !strings.Contains(msg, "deleted") {
		t.Errorf("runners left on GitHub: %+v (%v)", f.gh.Runners(), err)
	}
}

// A job that fails for another reason is a failure, not a retry.
func TestStartDoesNotRetryAPlainFailure(t *testing.T) {
	f := newFleet(t)
	f.start(t, func(n int, pod string, in jobapi.Input) (any, error) {
		return nil, errors.New("the runner could not start: exec format error")
	})
	var progress strings.Builder
	_, err := f.launcher(t, &progress).Start(context.Background(), unfitOpts)
	if err == nil || !strings.Contains(err.Error(), "exec format error") {
		t.Fatalf("start: %v", err)
	}
	if n := len(f.e.Jobs()); n != 1 {
		t.Errorf("%d RunPod jobs, want 1", n)
	}
	if len(f.gh.Runners()) != 0 {
		t.Errorf("runners left on GitHub: %+v", f.gh.Runners())
	}
}

// The resubmission follows the rule every /run does: one whose answer was
// lost is not sent again; Start fails and deletes the runner, so a job
// RunPod may have created fails at once.
func TestUnfitRetryLostAnswerIsNotResent(t *testing.T) {
	f := newFleet(t)
	f.start(t, func(n int, pod string, in jobapi.Input) (any, error) {
		if n == 1 {
			f.e.Fail(runpodtest.OpRun, runpodtest.Drop)
		}
		return nil, brokenHost()
	})
	var progress strings.Builder
	_, err := f.launcher(t, &progress).Start(context.Background(), unfitOpts)
	if err == nil || !strings.Contains(err.Error(), "not sent again") {
		t.Fatalf("start: %v", err)
	}
	if n := f.e.Calls(runpodtest.OpRun); n != 2 {
		t.Errorf("%d /run calls, want 2", n)
	}
	if len(f.gh.Runners()) != 0 {
		t.Errorf("runners left on GitHub: %+v", f.gh.Runners())
	}
}

// A job no worker takes while the endpoint's workers are throttled: the
// startup timeout's error says there is no capacity, and why.
func TestStartTimeoutSaysWorkersAreThrottled(t *testing.T) {
	f := newFleet(t)
	f.e.SetWorkers(&runpodtest.HealthWorkers{Throttled: 2})
	o := unfitOpts
	o.StartupTimeout = 300 * time.Millisecond
	var progress strings.Builder
	_, err := f.launcher(t, &progress).Start(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "IN_QUEUE") || !strings.Contains(err.Error(), "no capacity: 2 of the endpoint's workers are throttled") ||
		!strings.Contains(err.Error(), "2 throttled") {
		t.Fatalf("start: %v", err)
	}
	if f.e.Live() != 0 || len(f.gh.Runners()) != 0 {
		t.Errorf("%d jobs live, runners %+v", f.e.Live(), f.gh.Runners())
	}
}
