package scaler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/scalesettest"
)

// orphans starts scaler a with three runners waiting in RunPod's queue,
// makes the last one take a job (busy), stops a and returns the runners'
// names.
func orphans(t *testing.T, f *scalesettest.Fake, rp *fakeRunPod) (idle []string, busy string) {
	t.Helper()
	a := start(t, testConfig(t, f, rp.URL, 3), testOptions("host-a"))
	for range 3 {
		f.QueueJob("runpod-gpu")
	}
	waitFor(t, "three runners", 10*time.Second, func() bool { return rp.live() == 3 && len(f.Runners()) == 3 }, a.logs)
	rs := f.Runners()
	for _, what := range []string{"online", "job"} {
		resp, err := http.Post(fmt.Sprintf("%s/_fake/runners/%d/%s", f.URL, rs[2].ID, what), "application/json", nil)
		if err != nil || resp.StatusCode != 204 {
			t.Fatalf("%s: %v %v", what, resp, err)
		}
		resp.Body.Close()
	}
	a.stop(t)
	return []string{rs[0].Name, rs[1].Name}, rs[2].Name
}

func runnerNames(f *scalesettest.Fake) []string {
	var out []string
	for _, r := range f.Runners() {
		out = append(out, r.Name)
	}
	return out
}

func metricsText(t *testing.T, addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestTakeoverRemovesOrphans: a scaler taking over without the first's
// state removes the first's idle runners older than the idle timeout
// (their RunPod jobs are unknown to it) at its first reconcile, and
// leaves the busy one alone.
func TestTakeoverRemovesOrphans(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	idle, busy := orphans(t, f, rp)
	cfg := testConfig(t, f, rp.URL, 3)
	cfg.ScaleSets[0].IdleTimeout = time.Second
	time.Sleep(1100 * time.Millisecond) // a's runners are older than b's idle timeout
	b := start(t, cfg, testOptions("host-b"))
	waitFor(t, "the idle orphans removed", 5*time.Second, func() bool {
		names := runnerNames(f)
		return !slices.Contains(names, idle[0]) && !slices.Contains(names, idle[1])
	}, b.logs)
	if !slices.Contains(runnerNames(f), busy) {
		t.Fatalf("the busy runner %s was removed\n%s", busy, b.logs)
	}
	if m := metricsText(t, b.addr); !strings.Contains(m, `runpod_scaler_orphans_removed_total{scale_set="runpod-gpu"} 2`) {
		t.Fatalf("metrics:\n%s", m)
	}
}

// TestFreshForeignRunnersKept: another scaler's runners (in its state,
// not this one's) are not removed while younger than the idle timeout.
func TestFreshForeignRunnersKept(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	idle, _ := orphans(t, f, rp)
	cfg := testConfig(t, f, rp.URL, 3)
	cfg.ScaleSets[0].IdleTimeout = time.Minute
	lists := f.Count(scalesettest.OpRESTListRunners)
	b := start(t, cfg, testOptions("host-b"))
	waitFor(t, "b's session", 10*time.Second, func() bool { return f.Sessions()[f.ScaleSets()[0].ID] == "host-b" }, b.logs)
	waitFor(t, "two reconciles", 10*time.Second, func() bool { return f.Count(scalesettest.OpRESTListRunners) >= lists+2 }, b.logs)
	if names := runnerNames(f); !slices.Contains(names, idle[0]) || !slices.Contains(names, idle[1]) {
		t.Fatalf("fresh runners of another scaler removed: left %v\n%s", names, b.logs)
	}
}

// stubREST lists fixed pages and records removals; busy ids are refused
// as GitHub's 422 is, until the deadline.
type stubREST struct {
	pages   [][]github.RegisteredRunner
	busy    map[int64]bool
	removed []int64
}

func (s *stubREST) RunnersPage(_ context.Context, page int) ([]github.RegisteredRunner, int, error) {
	next := page + 1
	if next > len(s.pages) {
		next = 0
	}
	return slices.DeleteFunc(slices.Clone(s.pages[page-1]), func(r github.RegisteredRunner) bool {
		return slices.Contains(s.removed, r.ID)
	}), next, nil
}

func (s *stubREST) DeleteRunner(ctx context.Context, id int64) error {
	if s.busy[id] {
		<-ctx.Done()
		return ctx.Err()
	}
	s.removed = append(s.removed, id)
	return nil
}

// TestReconcileRules: which listed runners are orphans.
func TestReconcileRules(t *testing.T) {
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 36)
	fresh := strconv.FormatInt(time.Now().Unix(), 36)
	gpu := []string{"gpu"}
	rest := &stubREST{busy: map[int64]bool{6: true}, pages: [][]github.RegisteredRunner{{
		{ID: 1, Name: "gpu-0123abcd-" + old, Labels: gpu, Status: "offline"},            // orphan
		{ID: 2, Name: "gpu-0123abce-" + fresh, Labels: gpu, Status: "offline"},          // fresh
		{ID: 3, Name: "gpu-0123abcf-" + old, Labels: gpu, Status: "online", Busy: true}, // busy
		{ID: 4, Name: "gpu-0123abd0-" + old, Labels: gpu},                               // ours
	}, {
		{ID: 5, Name: "gpu-big-0123abd1-" + old, Labels: []string{"gpu-big", "gpu"}}, // another scale set's
		{ID: 6, Name: "gpu-0123abd2-" + old, Labels: gpu, Status: "online"},          // took a job meanwhile (422)
		{ID: 7, Name: "gpu-0123abd3-" + old, Labels: []string{"other"}},              // not the scale set's label
		{ID: 8, Name: "gpu-0123abd4", Labels: gpu, Status: "offline"},                // no time: first seen now
		{ID: 9, Name: "my-own-runner", Labels: gpu, Status: "online"},                // not a scale-set runner
	}}}
	defer func(d time.Duration) { orphanDeleteTimeout = d }(orphanDeleteTimeout)
	orphanDeleteTimeout = 50 * time.Millisecond
	m := newMetrics()
	s := &set{cfg: ScaleSetConfig{Name: "gpu", IdleTimeout: time.Minute}, rest: rest, m: m, log: slog.New(slog.DiscardHandler),
		status: "listening", check: time.Millisecond, runners: []*runner{{Name: "gpu-0123abd0-" + old}}}
	s.maybeReconcile(context.Background())
	if !slices.Equal(rest.removed, []int64{1}) {
		t.Fatalf("removed %v, want [1]", rest.removed)
	}
	s.seen[8] = time.Now().Add(-2 * time.Minute) // listed a while ago
	s.reconciledAt = time.Time{}
	s.maybeReconcile(context.Background())
	if !slices.Equal(rest.removed, []int64{1, 8}) {
		t.Fatalf("removed %v, want [1 8]", rest.removed)
	}
	s.status, s.reconciledAt = "standby: another scaler holds the message session", time.Time{}
	rest.pages[0][1].Name = "gpu-0123abce-" + old
	s.maybeReconcile(context.Background())
	if len(rest.removed) != 2 {
		t.Fatalf("a scaler standing by removed %v", rest.removed)
	}
}
