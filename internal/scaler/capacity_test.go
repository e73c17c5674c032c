package scaler

import (
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

func TestCapacityRule(t *testing.T) {
	for _, c := range []struct {
		max  int
		w    jobapi.HealthWorkers
		want int
	}{
		{5, jobapi.HealthWorkers{}, 5},                         // nothing throttled: RunPod can add workers
		{5, jobapi.HealthWorkers{Running: 3, Idle: 1}, 5},      // idem
		{5, jobapi.HealthWorkers{Throttled: 2}, 1},             // no worker: one job keeps asking
		{5, jobapi.HealthWorkers{Running: 1, Throttled: 2}, 2}, // one runs, one waits
		{5, jobapi.HealthWorkers{Running: 1, Idle: 1, Ready: 1, Initializing: 1, Throttled: 1, Unhealthy: 3}, 5},
		{3, jobapi.HealthWorkers{Running: 2, Idle: 2, Throttled: 1}, 3}, // never over max_runners
	} {
		if got := capacityFrom(c.max, c.w); got != c.want {
			t.Errorf("max %d, workers %+v: capacity %d, want %d", c.max, c.w, got, c.want)
		}
	}
}

// TestCapacityFromHealth: while RunPod reports throttled workers, the
// scale set's capacity (X-ScaleSetMaxCapacity, and the runners it starts)
// is the workers that can run a job plus one; once nothing is throttled,
// it is max_runners again.
func TestCapacityFromHealth(t *testing.T) {
	f := newScaleSetFake(t)
	p := runpodtest.New() // no worker: RunPod jobs stay queued
	t.Cleanup(p.Close)
	e := p.Endpoint("ep-cap", testRPKey)
	e.SetWorkers(&runpodtest.HealthWorkers{Running: 1, Throttled: 2})
	cfg := testConfig(t, f, e.URL(), 5)
	cfg.RunPodAPI, cfg.ScaleSets[0].Endpoint, cfg.ScaleSets[0].HealthCapacity = e.URL(), e.ID(), true
	o := testOptions("host-a")
	o.RunPodHTTP = p.Client()
	r := start(t, cfg, o)
	for range 5 {
		f.QueueJob("runpod-gpu")
	}
	capacity := func(n int) func() bool {
		return func() bool {
			caps := f.Capacities(f.ScaleSets()[0].ID)
			return len(caps) > 0 && caps[len(caps)-1] == n
		}
	}
	waitFor(t, "capacity 2 sent to GitHub", 10*time.Second, capacity(2), r.logs)
	time.Sleep(5 * testPeriod) // a few checks: no more may start
	if n := e.Live(); n != 2 {
		t.Fatalf("%d RunPod jobs while the capacity is 2\n%s", n, r.logs)
	}
	if m := get(t, "http://"+r.addr+"/metrics"); !strings.Contains(m, `runpod_scaler_capacity{scale_set="runpod-gpu"} 2`) {
		t.Errorf("metrics:\n%s", m)
	}
	if !strings.Contains(r.logs.String(), "throttled") {
		t.Errorf("the log does not say why the capacity dropped:\n%s", r.logs)
	}
	e.SetWorkers(&runpodtest.HealthWorkers{Running: 1})
	waitFor(t, "capacity 5 again", 10*time.Second, capacity(5), r.logs)
	waitFor(t, "five RunPod jobs", 10*time.Second, func() bool { return e.Live() == 5 }, r.logs)
	if max := e.MaxLive(); max != 5 {
		t.Fatalf("at most %d RunPod jobs at once, want 5", max)
	}
}
