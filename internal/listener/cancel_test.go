package listener_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/listener"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// scale is the fake runner's time_scale in these tests: the real
// runner's cancellation schedule (7.5 s, 2.5 s, ...) and the stop grace
// run that many times faster.
const scale = 10

// fakeGitHub records what the fake listener tells GitHub: the posts to
// /_fake/runners/{id}/{what}, in order, with the result of "done". Its
// /job answers 202 (no job yet) the first pending times.
type fakeGitHub struct {
	mu      sync.Mutex
	posts   []string
	results []string
	pending int
	removed bool // after the pending answers: the runner is gone (404)
	url     string
}

func newFakeGitHub(t *testing.T, pending int) *fakeGitHub {
	g := &fakeGitHub{pending: pending}
	g.removed = pending < 0
	g.pending = max(pending, 0)
	srv := httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

func (g *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	what := filepath.Base(r.URL.Path)
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10))
	g.mu.Lock()
	defer g.mu.Unlock()
	g.posts = append(g.posts, what)
	if what == "done" {
		var d struct{ Result string }
		json.Unmarshal(body, &d)
		g.results = append(g.results, d.Result)
	}
	if what == "job" && g.pending > 0 {
		g.pending--
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if what == "job" && g.removed {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *fakeGitHub) heard() (posts, results []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string{}, g.posts...), append([]string{}, g.results...)
}

// count is how many times what was posted.
func (g *fakeGitHub) count(what string) int {
	posts, _ := g.heard()
	n := 0
	for _, p := range posts {
		if p == what {
			n++
		}
	}
	return n
}

// fakeRootWithGitHub is fakeRoot whose listener talks to g.
func fakeRootWithGitHub(t *testing.T, behaviour map[string]any, g *fakeGitHub) string {
	t.Helper()
	root := fakeRoot(t, behaviour)
	rf := fmt.Sprintf(`{"agentId": 1, "agentName": "t", "gitHubUrl": "https://github.com/o", "fakeApi": %q}`, g.url)
	if err := os.WriteFile(filepath.Join(root, ".runner"), []byte(rf), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// cancelOnStep cancels once the job's step has set its signal
// dispositions (it wrote its pid to pidFile), within 10 s.
func cancelOnStep(pidFile string, cancel context.CancelFunc) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(pidFile); len(b) > 0 {
			break
		}
	}
	cancel()
}

// A cancelled job is stopped as the real runner stops it: the listener is
// given the runner's whole cancellation (its step ignores SIGINT and
// SIGTERM: 7.5 s + 2.5 s, then the log upload), prints the result line,
// tells GitHub the job ended (so the runner is no longer busy and GitHub
// removes it), and exits by itself, before the stop grace's SIGKILL.
func TestCancelledJobEndsBeforeTheListenerExits(t *testing.T) {
	g := newFakeGitHub(t, 0)
	pidFile := filepath.Join(t.TempDir(), "pids")
	root := fakeRootWithGitHub(t, map[string]any{"job_seconds": 60, "step_ignores": []string{"INT", "TERM"},
		"upload_seconds": 2, "time_scale": scale, "pid_file": pidFile}, g)
	var out lines
	cfg := config(root, &secret.Redactor{}, &out)
	cfg.StopGrace = listener.DefaultStopGrace / scale
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelled := make(chan time.Time, 1)
	go func() { cancelOnStep(pidFile, cancel); cancelled <- time.Now() }()
	res, err := run(t, ctx, cfg)
	took := time.Since(<-cancelled)
	posts, results := g.heard()
	if err != nil || res.ExitCode != 0 || !res.Cancelled {
		t.Errorf("exit code %d, cancelled %v, error %v, after %v: the listener was killed before it finished cancelling (GitHub heard %q)\n%s",
			res.ExitCode, res.Cancelled, err, took.Round(time.Millisecond), posts, strings.Join(out.all(), "\n"))
	}
	output := strings.Join(out.all(), "\n")
	if !strings.Contains(output, "Job test-job completed with result: Canceled") || res.JobResult != "Canceled" {
		t.Errorf("no result line, result %q:\n%s", res.JobResult, output)
	}
	if !strings.Contains(output, "Exiting...") {
		t.Errorf("the listener did not get SIGINT (its Ctrl-C handler prints Exiting...):\n%s", output)
	}
	if len(results) != 1 || results[0] != "Canceled" {
		t.Errorf("GitHub heard %q, results %q: want the job done, Canceled", posts, results)
	}
	if want := (7500 + 2500 + 2000) * time.Millisecond / scale; took < want {
		t.Errorf("cancelled in %v, under the runner's schedule (%v)", took, want)
	}
}

// A listener that ignores SIGINT is killed (its process group) when the
// grace ends.
func TestStopGraceEndsInSIGKILL(t *testing.T) {
	root := fakeRoot(t, map[string]any{"mode": "idle", "ignore_term": true})
	var out lines
	cfg := config(root, &secret.Redactor{}, &out)
	cfg.IdleTimeout, cfg.StopGrace = 100*time.Millisecond, 300*time.Millisecond
	var sig signals
	listener.WatchKill(&cfg, sig.kill)
	start := time.Now()
	res, err := run(t, context.Background(), cfg)
	sig.runReturned()
	if err != nil || !res.IdleTimedOut || res.ExitCode != -1 {
		t.Errorf("idle timed out %v, exit code %d, error %v; want a timeout ended by a signal", res.IdleTimedOut, res.ExitCode, err)
	}
	if got := strings.Join(sig.all(), ","); !strings.HasPrefix(got, "interrupt to the listener,killed to the group") {
		t.Errorf("signals %s, want SIGINT to the listener, then SIGKILL to its group", got)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("Run returned after %v: the grace (300 ms after the 100 ms idle timeout) was not given", took)
	}
}

// The job hook runs as a job step, as in the real runner: a failing
// started hook ("Set up runner") fails the job; the worker's own hook
// succeeds, run that way. (The worker sets no job-completed hook: see
// hooks.)
func TestFailingHookFailsTheJob(t *testing.T) {
	for _, c := range []struct{ hook, want string }{{"", "Succeeded"}, {"started", "Failed"}} {
		t.Run("fail "+c.hook, func(t *testing.T) {
			g := newFakeGitHub(t, 0)
			root := fakeRootWithGitHub(t, map[string]any{"job_seconds": 0, "fail_hook": c.hook}, g)
			var out lines
			res, err := run(t, context.Background(), config(root, &secret.Redactor{}, &out))
			_, results := g.heard()
			if err != nil || !res.JobCompleted || res.JobResult != c.want || len(results) != 1 || results[0] != c.want {
				t.Errorf("result %q (GitHub heard %q), error %v, want %s\n%s", res.JobResult, results, err, c.want, strings.Join(out.all(), "\n"))
			}
		})
	}
}

// The fake GitHub answers 202 while it has no job for the runner: the
// listener asks again until it gets one; a stop meanwhile ends it as an
// idle listener.
func TestListenerWaitsForAJob(t *testing.T) {
	g := newFakeGitHub(t, 3)
	var out lines
	res, err := run(t, context.Background(), config(fakeRootWithGitHub(t, map[string]any{"job_seconds": 0}, g), &secret.Redactor{}, &out))
	if err != nil || res.JobResult != "Succeeded" || g.count("job") != 4 {
		t.Errorf("result %q, error %v, %d asks for a job, want 4", res.JobResult, err, g.count("job"))
	}

	g = newFakeGitHub(t, 1<<30)
	cfg := config(fakeRootWithGitHub(t, map[string]any{"job_seconds": 0}, g), &secret.Redactor{}, &out)
	cfg.IdleTimeout = 700 * time.Millisecond
	res, err = run(t, context.Background(), cfg)
	if err != nil || res.JobStarted || !res.IdleTimedOut || res.ExitCode != 0 || g.count("job") < 3 {
		t.Errorf("job started %v, idle timed out %v, exit code %d, error %v, %d asks: want an idle listener's exit",
			res.JobStarted, res.IdleTimedOut, res.ExitCode, err, g.count("job"))
	}

	// A runner removed while it waits (the scaler or dispatch gave up on
	// it) exits 1 saying so, as the real listener does; it runs no job.
	g = newFakeGitHub(t, -1)
	var gone lines
	res, err = run(t, context.Background(), config(fakeRootWithGitHub(t, map[string]any{"job_seconds": 0}, g), &secret.Redactor{}, &gone))
	if res == nil || res.JobStarted || res.ExitCode != 1 || !strings.Contains(strings.Join(gone.all(), "\n"), "Runner registration has been deleted") {
		t.Errorf("a removed runner: result %+v, error %v, output:\n%s", res, err, strings.Join(gone.all(), "\n"))
	}
}
