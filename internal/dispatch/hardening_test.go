package dispatch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// connectOnRun makes every submitted job's runner come online at once.
func connectOnRun(t *testing.T, gh *githubtest.GitHub, e *endpoint) {
	e.onRun = func(id string, in map[string]any) {
		e.set(id, "IN_PROGRESS", "")
		connect(t, gh, jitConfigRunnerID(t, gh, in["runner_name"].(string)))
	}
}

// A brief RunPod outage (four 502s in a row from /status, more than one
// call's retries) and a GitHub one (502s from the runner lookup) while
// Start waits are no answer yet, not a failure: the healthy runner is
// kept and Start succeeds.
func TestJITStartRidesOutABriefOutage(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	var bad atomic.Int32
	bad.Store(4)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/status/") && bad.Add(-1) >= 0 {
			http.Error(w, "bad gateway", 502)
			return
		}
		r2, _ := http.NewRequest(r.Method, e.URL+r.URL.Path, r.Body)
		resp, err := http.DefaultClient.Do(r2)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer front.Close()
	e.onRun = func(id string, in map[string]any) {
		time.Sleep(300 * time.Millisecond)
		e.set(id, "IN_PROGRESS", "")
		connect(t, gh, jitConfigRunnerID(t, gh, in["runner_name"].(string)))
	}
	gh.Fail(githubtest.Fault{Match: "GET /orgs/octo/actions/runners/", Status: 502, Times: 12})
	var progress strings.Builder
	l := launcher(t, gh, e, "octo")
	l.RunPod.APIURL, l.Progress = front.URL+"/v2", &syncWriter{w: &progress}
	if _, err := l.Start(context.Background(), jitOpts); err != nil {
		t.Fatalf("a brief outage failed Start: %v", err)
	}
	if !strings.Contains(progress.String(), "no answer yet") {
		t.Errorf("the outage is not in the progress:\n%s", progress.String())
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// An outage that lasts past the startup timeout fails Start with what the
// last answer was, and cleans up.
func TestJITStartOutageUntilTheTimeout(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	gh.Fail(githubtest.Fault{Match: "GET /orgs/octo/actions/runners/", Status: 503, Times: 100000})
	o := jitOpts
	o.StartupTimeout = 300 * time.Millisecond
	_, err := launcher(t, gh, e, "octo").Start(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no answer yet") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("%v", err)
	}
	if j := e.running(); len(j) != 0 {
		t.Errorf("RunPod jobs left: %v", j)
	}
}

// Another workflow's runner already has the name (an explicit --label
// reused): GitHub answers 409 at the first attempt. Start fails saying so
// and leaves that runner alone, busy or idle.
func TestJITStartNameClashLeavesTheOtherRunner(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	id := gh.AddRunner("octo", "runpod-9-1-abcd", "runpod-9-1-abcd")
	l := launcher(t, gh, e, "octo")
	for _, busy := range []bool{true, false} {
		gh.SetRunner(id, "online", busy)
		_, err := l.Start(context.Background(), jitOpts)
		if err == nil || !strings.Contains(err.Error(), "a runner named runpod-9-1-abcd already exists") {
			t.Errorf("busy %v: %v", busy, err)
		}
		if _, ok := gh.Runner(id); !ok {
			t.Fatalf("busy %v: Start deleted runner %d, which another workflow registered", busy, id)
		}
	}
	if len(e.inputs) != 0 {
		t.Errorf("%d RunPod jobs submitted", len(e.inputs))
	}
}

// count 2: runner -1 comes online at once, then its worker idles out
// while runner -2 waits for capacity. Start must not say both are online.
func TestJITStartRechecksEarlyRunners(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	var mu sync.Mutex
	var workers sync.WaitGroup
	defer workers.Wait()
	n := 0
	e.onRun = func(id string, in map[string]any) {
		workers.Add(1)
		defer workers.Done()
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		rid := jitConfigRunnerID(t, gh, in["runner_name"].(string))
		if first {
			e.set(id, "IN_PROGRESS", "")
			connect(t, gh, rid)
			time.Sleep(100 * time.Millisecond) // its idle timeout
			gh.SetRunner(int64(rid), "offline", false)
			e.set(id, "FAILED", "no workflow job was assigned within idle_timeout 5m0s")
			return
		}
		time.Sleep(400 * time.Millisecond)
		e.set(id, "IN_PROGRESS", "")
		connect(t, gh, rid)
	}
	o := jitOpts
	o.Labels = []string{"runpod-9-1-abcd-1", "runpod-9-1-abcd-2"}
	_, err := launcher(t, gh, e, "octo").Start(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "runpod-9-1-abcd-1 came online, then") {
		t.Fatalf("%v", err)
	}
	assertNothingLeft(t, gh, e)
}

// With several runners, each worker's idle timeout is the idle timeout
// plus the startup timeout: a runner online early keeps waiting while the
// others start, and its matrix leg gets the whole idle timeout after
// Start returns. One runner keeps the idle timeout as given.
func TestJITStartLengthensIdleForSeveralRunners(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	connectOnRun(t, gh, e)
	o := jitOpts
	o.Labels = []string{"l-1", "l-2"}
	if _, err := launcher(t, gh, e, "octo").Start(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := launcher(t, gh, e, "octo").Start(context.Background(), JITOptions{Labels: []string{"l-3"}, IdleTimeout: 5 * time.Minute, JobTimeout: time.Hour, StartupTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	want := []float64{305, 305, 300}
	for i, in := range e.inputs {
		if in["idle_timeout"] != want[i] {
			t.Errorf("job %d: idle_timeout %v, want %v", i, in["idle_timeout"], want[i])
		}
	}
}

// Cancelled while waiting (the workflow was cancelled: the runner sends
// SIGINT and kills the step 10 s later): the RunPod jobs are cancelled
// concurrently, then the runners deleted, within CancelCleanupTimeout.
func TestJITStartCancelledCleansUpFast(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	e.cancelDelay = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	var submitted atomic.Int32
	var cancelled atomic.Int64
	e.onRun = func(id string, _ map[string]any) {
		e.set(id, "IN_PROGRESS", "")
		if submitted.Add(1) == 6 {
			time.Sleep(50 * time.Millisecond) // /run answered
			cancelled.Store(time.Now().UnixNano())
			cancel()
		}
	}
	o := jitOpts
	o.Labels = []string{"l-1", "l-2", "l-3", "l-4", "l-5", "l-6"}
	l := launcher(t, gh, e, "octo")
	_, err := l.Start(ctx, o)
	took := time.Since(time.Unix(0, cancelled.Load()))
	if err == nil || !strings.Contains(err.Error(), "cleaned up") {
		t.Fatalf("%v", err)
	}
	if took > 3500*time.Millisecond {
		t.Errorf("cleanup of 6 runners took %v after the cancel (one cancel: 1 s; one after the other: 6 s)", took)
	}
	assertNothingLeft(t, gh, e)

	// A RunPod that hangs: the cleanup gives up in time, and says so.
	gh2 := githubtest.New(testPAT)
	defer gh2.Close()
	e2 := newEndpoint(t)
	e2.cancelDelay = 3 * time.Second
	ctx2, cancel2 := context.WithCancel(context.Background())
	e2.onRun = func(id string, _ map[string]any) {
		e2.set(id, "IN_PROGRESS", "")
		time.Sleep(50 * time.Millisecond)
		cancelled.Store(time.Now().UnixNano())
		cancel2()
	}
	l2 := launcher(t, gh2, e2, "octo")
	l2.CleanupTimeout, l2.CancelCleanupTimeout = time.Minute, 500*time.Millisecond
	_, err = l2.Start(ctx2, jitOpts)
	if took := time.Since(time.Unix(0, cancelled.Load())); took > 2*time.Second {
		t.Errorf("cancelled cleanup took %v, with a 500ms budget", took)
	}
	if err == nil || !strings.Contains(err.Error(), "cleanup FAILED") {
		t.Errorf("%v", err)
	}
}

// Submitted hears of the runners as soon as they are registered, and
// again with their jobs once submitted, before they are online (the
// action writes them out for the stop job); an error from it fails
// Start, which cleans up.
func TestJITStartTellsSubmittedFirst(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	l := launcher(t, gh, e, "octo")
	var calls [][]Runner
	l.Submitted = func(rs []Runner) error {
		calls = append(calls, rs)
		if len(gh.Runners()) != 1 || gh.Runners()[0].Status == "online" {
			t.Error("Submitted was called late")
		}
		if len(calls) == 2 {
			return errors.New("GITHUB_OUTPUT: disk full")
		}
		return nil
	}
	_, err := l.Start(context.Background(), jitOpts)
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "cleaned up") {
		t.Fatalf("%v", err)
	}
	if len(calls) != 2 || calls[0][0].RunnerID == 0 || calls[0][0].JobID != "" || calls[1][0].JobID != "job-1" {
		t.Errorf("Submitted got %+v", calls)
	}
	assertNothingLeft(t, gh, e)
}

// A registration whose answer was lost, and a runner list that fails too:
// the error names the runner that may exist, for the user to delete.
func TestJITStartNamesARunnerThatMayExist(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	gh.Fail(githubtest.Fault{Match: "generate-jitconfig", Lost: true, Times: 100},
		githubtest.Fault{Match: "GET /orgs/octo/actions/runners", Status: 500, Times: 1000})
	_, err := launcher(t, gh, newEndpoint(t), "octo").Start(context.Background(), jitOpts)
	if err == nil || !strings.Contains(err.Error(), "runner runpod-9-1-abcd may exist on GitHub") {
		t.Fatalf("%v", err)
	}
}

// Many runners: each round reads the runner list, not one GET per runner.
func TestJITStartListsManyRunners(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	var mu sync.Mutex
	n := 0
	e.onRun = func(id string, in map[string]any) {
		e.set(id, "IN_PROGRESS", "")
		mu.Lock()
		n++
		last := n == 20
		mu.Unlock()
		if last { // all online together, after a few rounds
			time.Sleep(100 * time.Millisecond)
			for _, r := range gh.Registered() {
				connect(t, gh, float64(r.ID))
			}
		}
	}
	o := jitOpts
	o.Labels = nil
	for i := range 20 {
		o.Labels = append(o.Labels, "l-"+string(rune('a'+i)))
	}
	if _, err := launcher(t, gh, e, "octo").Start(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	gets, lists := 0, 0
	for _, r := range gh.Requests() {
		r.Path = strings.TrimPrefix(r.Path, "/api/v3")
		switch {
		case r.Method == "GET" && strings.HasPrefix(r.Path, "/orgs/octo/actions/runners/"):
			gets++
		case r.Method == "GET" && r.Path == "/orgs/octo/actions/runners":
			lists++
		}
	}
	if gets != 0 || lists == 0 {
		t.Errorf("%d runner GETs and %d list calls: want lists only", gets, lists)
	}
}

// A job submitted again after an unfit worker is a new RunPod job:
// Submitted hears of it, so the stop job cancels that one.
func TestJITStartTellsSubmittedOfAnUnfitRetry(t *testing.T) {
	f := newFleet(t)
	f.start(t, func(n int, pod string, in jobapi.Input) (any, error) {
		if n == 1 {
			return nil, brokenHost()
		}
		time.Sleep(100 * time.Millisecond)
		return f.online(in)
	})
	var mu sync.Mutex
	var last []Runner
	l := f.launcher(t, &strings.Builder{})
	l.Submitted = func(rs []Runner) error { mu.Lock(); last = rs; mu.Unlock(); return nil }
	rs, err := l.Start(context.Background(), unfitOpts)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(last) != 1 || last[0].JobID != rs[0].JobID || len(f.e.Jobs()) != 2 {
		t.Errorf("Submitted last heard of %+v; Start returned %+v", last, rs)
	}
}
