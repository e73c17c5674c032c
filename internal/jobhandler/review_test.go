package jobhandler

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
)

// The time in the runner's name is taken just before it is registered,
// not when the job starts: waits before the registration (rate limits,
// minting an App token, a slow GitHub) must not make a starting runner
// look old to a sweep.
func TestRunnerNameTimedAtRegistration(t *testing.T) {
	b := newBubble(t)
	synctest.Test(t, func(t *testing.T) {
		b.gh.Fail(githubtest.Fault{Match: "runner-groups", Delay: 30 * time.Minute})
		start := time.Now()
		res, _ := b.handle(context.Background(), `{"runner_group": "gpu-runners"}`)
		var name string
		for _, r := range b.gh.Requests() {
			if strings.HasSuffix(r.Path, "generate-jitconfig") {
				name, _ = r.Body["name"].(string)
			}
		}
		born, ok := runnerBorn(name)
		if !ok || born.Before(start.Add(30*time.Minute)) {
			t.Errorf("registered as %q (born %v), %v after the job started; want the registration's time", name, born.Sub(start), 30*time.Minute)
		}
		if res == nil || res.RunnerName != name {
			t.Errorf("result %+v, want runner_name %q", res, name)
		}
	})
}

// old adds a runner of the worker's scheme and label, registered 3 h ago.
func (b *bubble) old(scope, pod string) int64 {
	return b.gh.AddRunner(scope, RunnerName(pod, "job-1", time.Now().Add(-3*time.Hour)), "self-hosted", "runpod", OwnLabel)
}

// A runner that comes back online between the sweep's listing and its
// removal (a self-update's restart) is left alone: each candidate is read
// again right before it is removed.
func TestSweepRechecksBeforeDeleting(t *testing.T) {
	b := newBubble(t)
	synctest.Test(t, func(t *testing.T) {
		id := b.old("my-org", "podA")
		b.gh.After = func(method, path string) {
			if method == "GET" && strings.HasSuffix(path, "/actions/runners") {
				b.gh.SetRunner(id, "online", false)
			}
		}
		if err := b.h.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(b.gh.Runners()) != 1 {
			t.Errorf("the sweep removed runner %d, online again since it was listed", id)
		}
	})
}

// Only the worker's own runners are swept: its naming scheme and the
// label it always sets; a runner named like them but without the label
// is someone else's.
func TestSweepNeedsTheWorkersLabel(t *testing.T) {
	b := newBubble(t)
	synctest.Test(t, func(t *testing.T) {
		theirs := b.gh.AddRunner("my-org", RunnerName("podX", "job-1", time.Now().Add(-3*time.Hour)), "self-hosted", "runpod")
		mine := b.old("my-org", "podY")
		if err := b.h.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if rs := b.gh.Runners(); len(rs) != 1 || rs[0].ID != theirs {
			t.Errorf("runners left %+v: want only %d (no %s label); %d is the worker's", rs, theirs, OwnLabel, mine)
		}
	})
	if l := (&Handler{Getenv: func(string) string { return "" }}).Labels(nil); !hasLabel(l, OwnLabel) {
		t.Errorf("labels %v lack %s", l, OwnLabel)
	}
}

// RUNNER_SWEEP_AFTER is at least an hour: longer than the longest a
// registration can take plus a runner's start.
func TestSweepThresholdAtLeastAnHour(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "1h": true, "3600": true, "2h": true, "59m": false, "30m": false, "600": false} {
		_, err := sweepAfter(v)
		if (err == nil) != ok {
			t.Errorf("RUNNER_SWEEP_AFTER=%q: %v", v, err)
		}
	}
}

// A sweep's cost is bounded whatever the scope holds: a few pages of the
// runner list, and nothing at all when the rate limit runs low.
func TestSweepBounded(t *testing.T) {
	b := newBubble(t)
	synctest.Test(t, func(t *testing.T) {
		for i := range 1000 {
			b.gh.AddRunner("my-org", "builder-"+strconv.Itoa(i), "self-hosted")
		}
		b.old("my-org", "podLate") // on page 11
		if err := b.h.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		lists := 0
		for _, r := range b.gh.Requests() {
			if r.Method == "GET" && strings.HasSuffix(r.Path, "/actions/runners") {
				lists++
			}
		}
		if lists > sweepPages {
			t.Errorf("%d list requests, want at most %d", lists, sweepPages)
		}
	})
	b = newBubble(t)
	synctest.Test(t, func(t *testing.T) {
		b.old("my-org", "podA")
		b.gh.RateRemaining = 300
		if err := b.h.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(b.gh.Runners()) != 1 {
			t.Error("the sweep removed a runner with 300 requests left in the rate limit")
		}
		if !strings.Contains(b.logs.String(), "rate limit") {
			t.Errorf("the skipped sweep is not logged:\n%s", b.logs.String())
		}
	})
}

// The runner's stop (SIGTERM, then SIGKILL) fits in a short grace: a
// listener that ignores SIGTERM is killed in time for the result.
func TestStopGraceFitsTheGrace(t *testing.T) {
	e := newEnv(t, map[string]any{"job_seconds": 30, "ignore_term": true})
	e.handler.Grace = 6 * time.Second
	e.handler.StopGrace = 0 // the default
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	go func() {
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.logs.String(), "Running job") && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		cancelled = time.Now()
		cancel()
	}()
	_, err, _ := e.run(t, ctx, map[string]any{"github_org": "my-org"})
	took := time.Since(cancelled)
	t.Logf("returned %v after the cancel (grace %v)", took.Round(time.Millisecond), e.handler.Grace)
	if err == nil || !strings.Contains(err.Error(), "cancel") {
		t.Errorf("err = %v", err)
	}
	if took > e.handler.Grace-time.Second {
		t.Errorf("returned %v after the cancel, with a %v grace", took.Round(time.Millisecond), e.handler.Grace)
	}
}

// GITHUB_ORG names one scope; a list there is a mistake, not an allow-list.
func TestGitHubOrgIsOneScope(t *testing.T) {
	env := map[string]string{"GITHUB_PAT": pat, "GITHUB_ORG": "my-org,other-org"}
	getenv := func(k string) string { return env[k] }
	for _, in := range []string{`{"github_org": "my-org"}`, `{"github_org": "other-org"}`, `{}`} {
		_, err := ParseInput([]byte(in), getenv)
		if err == nil || !strings.Contains(err.Error(), "ALLOWED_GITHUB_SCOPES") {
			t.Errorf("%s with GITHUB_ORG=my-org,other-org: %v", in, err)
		}
	}
	env["ALLOWED_GITHUB_SCOPES"] = "my-org,other-org"
	env["GITHUB_ORG"] = "my-org"
	if _, err := ParseInput([]byte(`{"github_org": "other-org"}`), getenv); err != nil {
		t.Errorf("ALLOWED_GITHUB_SCOPES: %v", err)
	}
}
