package scaler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	fleetpkg "github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest/fleet"
	"github.com/runpod-workers/worker-github_runner/internal/scalesettest"
)

// fleet is runpodtest's endpoint with workers that run RunPod's real job
// loop (runpodtest/fleet): a job's error is the loop's own, so an
// *runpod.UnfitError becomes the unfit report a client reads from
// /status.
type fleet struct {
	p *runpodtest.Platform
	e *runpodtest.Endpoint
}

func startFleet(t *testing.T, handle fleetpkg.Handle) *fleet {
	t.Helper()
	f := &fleet{p: runpodtest.New()}
	f.e = f.p.Endpoint("ep-unfit", testRPKey)
	t.Cleanup(f.p.Close)
	fleetpkg.Start(t, f.p, f.e, handle)
	return f
}

// fit is a sound worker: the runner of the job's JIT config takes a job
// and runs it.
func fit(in jobapi.Input) (any, error) {
	if in.JITConfig == nil {
		return nil, errors.New("no JIT config")
	}
	api, id := jitRunner(*in.JITConfig)
	if !runFakeRunner(api, id, 100*time.Millisecond, func() bool { return false }) {
		return nil, errors.New("the runner did not run a job")
	}
	return map[string]any{"runner": id}, nil
}

// brokenHost is the worker's error on a host without its GPU: RunPod
// replaces the worker (stopPod).
func brokenHost() error {
	return fmt.Errorf("before the runner started: %w", &runpod.UnfitError{Message: "host unfit: no NVIDIA device in /dev",
		Detail: map[string]any{"gpus": []any{}, "problems": []string{"no NVIDIA device in /dev"}}})
}

// tooSmall is a sound worker without the GPUs the job asks for: it stays.
func tooSmall() error {
	return &runpod.UnfitError{Message: "this worker cannot run the job: 1 GPUs, the job wants 2", KeepWorker: true,
		Detail: map[string]any{"problems": []string{"1 GPUs, the job wants 2"}}}
}

// runUnfit runs one job on a scale set with unfit_retries retries, on
// a fleet whose workers do what handle says, until it is done and
// nothing is left behind.
func runUnfit(t *testing.T, retries int, handle func(n int, pod string, in jobapi.Input) (any, error)) (*scalesettest.Fake, *fleet, *running) {
	t.Helper()
	f := newScaleSetFake(t)
	fl := startFleet(t, handle)
	cfg := testConfig(t, f, fl.e.URL(), 2)
	cfg.RunPodAPI, cfg.ScaleSets[0].Endpoint, cfg.ScaleSets[0].UnfitRetries = fl.e.URL(), fl.e.ID(), retries
	o := testOptions("host-a")
	o.RunPodHTTP, o.UnfitHold = fl.p.Client(), 300*time.Millisecond
	r := start(t, cfg, o)
	f.QueueJob("runpod-gpu")
	waitFor(t, "the job done", 30*time.Second, allDone(f, 1), r.logs)
	assertClean(t, f, fl.e.Live, r)
	return f, fl, r
}

// TestUnfitWorkerResubmitted: the runner's RunPod job fails on an unfit
// worker before its runner started, so its JIT config is unused: the
// scaler submits the same input again (no new runner), another worker
// runs it, and the unfit job is logged and counted.
func TestUnfitWorkerResubmitted(t *testing.T) {
	f, fl, r := runUnfit(t, 2, func(n int, pod string, in jobapi.Input) (any, error) {
		if n == 1 {
			return nil, brokenHost()
		}
		return fit(in)
	})
	jobs := fl.e.Jobs()
	if len(jobs) != 2 || jobs[0].Status != jobapi.Failed || jobs[0].WorkerID != "pod-1" || jobs[1].Status != jobapi.Completed {
		t.Fatalf("RunPod jobs %+v, want the first FAILED on pod-1, the second COMPLETED", jobs)
	}
	if string(jobs[0].Input) != string(jobs[1].Input) {
		t.Errorf("the second job's input differs from the first's")
	}
	if n := f.Count(scalesettest.OpGenerateJIT); n != 1 {
		t.Errorf("%d runners minted, want 1 (the unfit job's JIT config was unused)", n)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "no NVIDIA device in /dev") || !strings.Contains(logs, `"worker":"pod-1"`) || !strings.Contains(logs, "unfit retry 1 of 2") {
		t.Errorf("the log does not say which worker was unfit, why, and the retry:\n%s", logs)
	}
	if m := get(t, "http://"+r.addr+"/metrics"); !strings.Contains(m, `runpod_scaler_unfit_total{scale_set="runpod-gpu",action="resubmitted"} 1`) {
		t.Errorf("metrics:\n%s", m)
	}
}

// TestUnfitRetriesBounded: a runner whose job fails on unfit workers
// more than unfit_retries times is removed; after the unfit hold the
// target starts a fresh runner, which runs the job.
func TestUnfitRetriesBounded(t *testing.T) {
	f, fl, r := runUnfit(t, 1, func(n int, pod string, in jobapi.Input) (any, error) {
		if n <= 2 {
			return nil, tooSmall()
		}
		return fit(in)
	})
	jobs := fl.e.Jobs()
	if len(jobs) != 3 || jobs[0].Status != jobapi.Failed || jobs[1].Status != jobapi.Failed || jobs[2].Status != jobapi.Completed {
		t.Fatalf("RunPod jobs %+v, want two FAILED (the first runner's), one COMPLETED", jobs)
	}
	if string(jobs[0].Input) != string(jobs[1].Input) || string(jobs[1].Input) == string(jobs[2].Input) {
		t.Errorf("want the first runner's input twice, then a fresh runner's")
	}
	if n := f.Count(scalesettest.OpGenerateJIT); n != 2 {
		t.Errorf("%d runners minted, want 2", n)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "1 GPUs, the job wants 2") || !strings.Contains(logs, "removing the runner") {
		t.Errorf("the log does not say the runner was given up:\n%s", logs)
	}
	m := get(t, "http://"+r.addr+"/metrics")
	for _, want := range []string{`runpod_scaler_unfit_total{scale_set="runpod-gpu",action="resubmitted"} 1`,
		`runpod_scaler_unfit_total{scale_set="runpod-gpu",action="removed"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

// TestUnfitRetriesZero: with unfit_retries 0 an unfit job's runner is
// removed at once, and a fresh one started after the hold.
func TestUnfitRetriesZero(t *testing.T) {
	f, fl, r := runUnfit(t, 0, func(n int, pod string, in jobapi.Input) (any, error) {
		if n == 1 {
			return nil, brokenHost()
		}
		return fit(in)
	})
	if n, m := len(fl.e.Jobs()), f.Count(scalesettest.OpGenerateJIT); n != 2 || m != 2 {
		t.Fatalf("%d RunPod jobs, %d runners minted; want 2 and 2", n, m)
	}
	if logs := r.logs.String(); !strings.Contains(logs, "unfit_retries is 0") || !strings.Contains(logs, "starts no runner for 300ms") {
		t.Errorf("the log does not say the runner was given up at once, and the hold:\n%s", logs)
	}
}
