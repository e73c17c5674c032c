// Package fleet gives a runpodtest endpoint workers that run RunPod's real
// job loop (internal/runpod) with a test's handler, one at a time, a fresh
// one (pod-1, pod-2...) whenever the last exits, as RunPod replaces a
// worker that asked to be stopped. A job's error is then the loop's own:
// an *runpod.UnfitError becomes the unfit report a client reads from
// /status. Clients' tests (dispatch, the scaler) use it; it lives apart
// from runpodtest because runpod's own tests import runpodtest.
package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

// Handle decides a job: n counts the jobs from 1, pod is the worker's id,
// in the job's input as sent.
type Handle func(n int, pod string, in jobapi.Input) (any, error)

// Fleet is the workers of one endpoint.
type Fleet struct {
	runs atomic.Int32
}

// Runs is how many jobs the workers handled so far.
func (f *Fleet) Runs() int { return int(f.runs.Load()) }

// Start runs e's workers on p with handle until the test ends.
func Start(t *testing.T, p *runpodtest.Platform, e *runpodtest.Endpoint, handle Handle) *Fleet {
	t.Helper()
	f := &Fleet{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.workers(ctx, t, p, e, handle) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return f
}

func (f *Fleet) workers(ctx context.Context, t *testing.T, p *runpodtest.Platform, e *runpodtest.Endpoint, handle Handle) {
	for n := 1; ctx.Err() == nil; n++ {
		pod := fmt.Sprintf("pod-%d", n)
		env := e.Env(pod)
		cfg, err := runpod.ConfigFromEnv(func(k string) string { return env[k] })
		if err != nil {
			t.Error(err)
			return
		}
		h := runpod.HandlerFunc(func(ctx context.Context, job *runpod.Job, _ runpod.Updater) (any, error) {
			var in jobapi.Input
			if err := json.Unmarshal(job.Input, &in); err != nil {
				return nil, err
			}
			return handle(int(f.runs.Add(1)), pod, in)
		})
		w, err := runpod.NewJobLoop(runpod.Options{Config: cfg, Handler: h, Client: p.Client(), TakeTimeout: time.Second,
			NoJobWait: 10 * time.Millisecond, BackoffBase: 10 * time.Millisecond, PostRetryWaits: []time.Duration{10 * time.Millisecond}})
		if err != nil {
			t.Error(err)
			return
		}
		if err := w.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("worker %s: %v", pod, err)
			return
		}
	}
}
