package scaler

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset/listener"

	"github.com/runpod-workers/worker-github_runner/internal/dispatch"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	"github.com/runpod-workers/worker-github_runner/internal/scalesettest"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

type running struct {
	s      *Scaler
	cancel context.CancelFunc
	done   chan error
	logs   *runpodtest.LogBuffer
	addr   string
}

func testConfig(t *testing.T, f *scalesettest.Fake, rpURL string, max int) *Config {
	return &Config{
		GitHubURL: f.ConfigURL("octo"), RunPodAPI: rpURL + "/v2", StateFile: filepath.Join(t.TempDir(), "state.json"),
		Listen: "127.0.0.1:0", CheckInterval: testPeriod,
		ScaleSets: []ScaleSetConfig{{Name: "runpod-gpu", RunnerGroup: "default", Endpoint: "ep1", MaxRunners: max,
			IdleTimeout: time.Minute, JobTimeout: 10 * time.Minute}},
	}
}

func testOptions(owner string) Options {
	return Options{Owner: owner, SessionRetry: 200 * time.Millisecond, FinishGrace: 2 * time.Second,
		GitHubOptions: fastGitHub, RunPodBackoff: 5 * time.Millisecond}
}

func start(t *testing.T, cfg *Config, opts Options) *running {
	t.Helper()
	log, buf := testLog(t)
	ready := make(chan string, 1)
	opts.Ready = func(addr string) { ready <- addr }
	s, err := New(cfg, testSecrets(), log, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan error, 1), logs: buf}
	go func() { r.done <- s.Run(ctx) }()
	select {
	case r.addr = <-ready:
	case err := <-r.done:
		t.Fatalf("scaler ended: %v\n%s", err, buf)
	case <-time.After(20 * time.Second):
		t.Fatalf("scaler not ready\n%s", buf)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("scaler: %v", err)
		}
		r.done <- err // stop is idempotent
	case <-time.After(20 * time.Second):
		t.Errorf("scaler did not stop\n%s", r.logs)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool, logs *runpodtest.LogBuffer) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s\n%s", what, logs)
		}
	}
}

func allDone(f *scalesettest.Fake, n int) func() bool {
	return func() bool {
		jobs := f.Jobs()
		done := 0
		for _, j := range jobs {
			if j.State == scalesettest.JobDone {
				done++
			}
		}
		return done == n
	}
}

// assertClean: every job ran exactly once, no runner is registered, no
// RunPod job lives, the state file is empty, and no secret was logged.
func assertClean(t *testing.T, f *scalesettest.Fake, live func() int, r *running) {
	t.Helper()
	for _, j := range f.Jobs() {
		if j.Runs != 1 || j.Result != "succeeded" {
			t.Errorf("job %d ran %d times, result %q", j.RequestID, j.Runs, j.Result)
		}
	}
	// A runner started on statistics that were stale by then (GitHub's
	// messages lag the jobs' ends) is idle and goes at its idle timeout.
	waitFor(t, "no runner and no RunPod job left", 15*time.Second+r.s.sets[0].cfg.IdleTimeout, func() bool {
		return len(f.Runners()) == 0 && live() == 0 && len(r.s.sets[0].snapshot()) == 0
	}, r.logs)
	logs := r.logs.String()
	for _, sec := range append(f.Issued(), testPAT, testRPKey) {
		if strings.Contains(logs, sec) {
			t.Fatalf("a secret (%.12s...) is in the logs", sec)
		}
	}
}

// TestFiveJobsMaxThree: five jobs, max_runners 3: never more than three
// RunPod jobs at once, every job runs once, nothing is left.
func TestFiveJobsMaxThree(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 300*time.Millisecond)
	r := start(t, testConfig(t, f, rp.URL, 3), testOptions("host-a"))
	for range 5 {
		f.QueueJob("runpod-gpu")
	}
	waitFor(t, "five jobs done", 30*time.Second, allDone(f, 5), r.logs)
	assertClean(t, f, rp.live, r)
	runs, maxLive := rp.stats()
	if maxLive > 3 || runs != 5 {
		t.Fatalf("%d RunPod jobs, at most %d at once; want 5, at most 3", runs, maxLive)
	}
	// The RunPod job carries the JIT config, the runner's name and the
	// timeouts, and a policy from them; nothing else.
	rp.mu.Lock()
	j := rp.jobs["rp-1"]
	rp.mu.Unlock()
	if j.Input.GitHubPAT != nil || j.Input.RunnerName == nil || string(j.Input.IdleTimeout) != "60" || string(j.Input.JobTimeout) != "600" ||
		j.Policy == nil || j.Policy.ExecutionTimeout != (21*time.Minute).Milliseconds() {
		t.Fatalf("job input %+v policy %+v", j.Input, j.Policy)
	}
}

// TestRunAnswerLost: /run answers 500 after creating the job. The scaler
// does not send it again; it removes that runner (so the job RunPod
// created anyway ends without running anything) and starts another.
func TestRunAnswerLost(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.faults = []int{-500, 429}
	r := start(t, testConfig(t, f, rp.URL, 3), testOptions("host-a"))
	f.QueueJob("runpod-gpu")
	waitFor(t, "the job done", 20*time.Second, allDone(f, 1), r.logs)
	assertClean(t, f, rp.live, r)
	// The lost one, then one more; a third can only be an idle runner
	// started on statistics not yet updated for the job's end (it went at
	// its idle timeout: assertClean). The lost /run is never resent.
	if runs, _ := rp.stats(); runs < 2 || runs > 3 {
		t.Fatalf("%d RunPod jobs created, want 2 (the lost one, then one more) or 3 (an idle one on stale statistics)", runs)
	}
	rp.mu.Lock()
	first := rp.jobs["rp-1"].Status
	rp.mu.Unlock()
	if first != jobapi.Failed {
		t.Fatalf("the job whose answer was lost is %s, want FAILED (its runner was removed)", first)
	}
}

// TestGitHubFaults: 5xx and 429 from the scale-set service are retried.
func TestGitHubFaults(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	f.Fail(scalesettest.OpGenerateJIT, 500, 429, 502)
	f.Fail(scalesettest.OpGetMessage, 503, 429)
	f.Fail(scalesettest.OpAcquireJobs, 500)
	r := start(t, testConfig(t, f, rp.URL, 2), testOptions("host-a"))
	for range 3 {
		f.QueueJob("runpod-gpu")
	}
	waitFor(t, "three jobs done", 30*time.Second, allDone(f, 3), r.logs)
	assertClean(t, f, rp.live, r)
}

// TestReofferedJob: a job canceled and assigned again does not get a
// second runner.
func TestReofferedJob(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true // the runner's worker does not start yet
	r := start(t, testConfig(t, f, rp.URL, 3), testOptions("host-a"))
	req := f.QueueJob("runpod-gpu")
	waitFor(t, "a RunPod job", 10*time.Second, func() bool { return rp.live() == 1 }, r.logs)
	if err := f.Reoffer(req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job assigned again", 10*time.Second, func() bool {
		j := f.Jobs()[0]
		return j.Offers == 2 && j.State == scalesettest.JobAssigned
	}, r.logs)
	time.Sleep(3 * testPeriod)
	if runs, _ := rp.stats(); runs != 1 {
		t.Fatalf("%d RunPod jobs after a re-offer, want 1", runs)
	}
	// Now the worker starts: the one runner takes the job.
	rp.mu.Lock()
	rp.noRun = false
	for _, j := range rp.jobs {
		rp.wg.Add(1)
		go rp.work(j)
	}
	rp.mu.Unlock()
	waitFor(t, "the job done", 20*time.Second, allDone(f, 1), r.logs)
	assertClean(t, f, rp.live, r)
}

// TestSecondScaler: a second scaler on the same scale set is told the
// session exists, stands by, and takes over when the first stops.
func TestSecondScaler(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	a := start(t, testConfig(t, f, rp.URL, 2), testOptions("host-a"))
	waitFor(t, "a's session", 10*time.Second, func() bool { return len(f.Sessions()) == 1 }, a.logs)
	b := start(t, testConfig(t, f, rp.URL, 2), testOptions("host-b"))
	waitFor(t, "b's conflict", 10*time.Second, func() bool { return strings.Contains(b.logs.String(), "session already exists") }, b.logs)
	if h := get(t, "http://"+b.addr+"/healthz"); !strings.Contains(h, "standby") {
		t.Fatalf("healthz of the standby: %q", h)
	}
	a.stop(t)
	waitFor(t, "b takes over", 10*time.Second, func() bool { return f.Sessions()[f.ScaleSets()[0].ID] == "host-b" }, b.logs)
	f.QueueJob("runpod-gpu")
	waitFor(t, "the job done", 20*time.Second, allDone(f, 1), b.logs)
	assertClean(t, f, rp.live, b)
	if m := get(t, "http://"+b.addr+"/metrics"); !strings.Contains(m, `runpod_scaler_session_conflicts_total{scale_set="runpod-gpu"}`) ||
		!strings.Contains(m, `runpod_scaler_jobs_completed_total{scale_set="runpod-gpu",result="succeeded"} 1`) {
		t.Fatalf("metrics:\n%s", m)
	}
}

// TestRestartMidFlight: a scaler stopped while its runners run; the next
// one (same state file) counts them, never exceeds max_runners, and
// cleans up after them.
func TestRestartMidFlight(t *testing.T) { takeOver(t, true) }

// TestTakeoverWithoutState: a scaler on another host (its own, empty
// state file) takes over while the first one's runners still run jobs:
// GitHub's busy-runner count keeps it within max_runners.
func TestTakeoverWithoutState(t *testing.T) { takeOver(t, false) }

// takeOver stops a scaler while two runners run jobs and four are queued,
// and starts another, with the same state file or its own.
func takeOver(t *testing.T, sameState bool) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 1500*time.Millisecond)
	cfg := testConfig(t, f, rp.URL, 2)
	a := start(t, cfg, testOptions("host-a"))
	for range 4 {
		f.QueueJob("runpod-gpu")
	}
	waitFor(t, "two busy runners", 10*time.Second, func() bool {
		n := 0
		for _, r := range f.Runners() {
			if r.Job != 0 {
				n++
			}
		}
		return n == 2
	}, a.logs)
	a.stop(t)
	if !sameState {
		cfg = testConfig(t, f, rp.URL, 2)
	}
	b := start(t, cfg, testOptions("host-b"))
	waitFor(t, "four jobs done", 30*time.Second, allDone(f, 4), b.logs)
	assertClean(t, f, rp.live, b)
	if runs, maxLive := rp.stats(); runs != 4 || maxLive > 2 {
		t.Fatalf("%d RunPod jobs, at most %d at once; want 4, at most 2", runs, maxLive)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestMintAnswerLost: generatejitconfig registers the runner but its
// answer is lost; the client's retry is refused (the name exists). The
// scaler removes that runner, which nobody would ever start.
func TestMintAnswerLost(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	f.Fail(scalesettest.OpGenerateJIT, -500)
	r := start(t, testConfig(t, f, rp.URL, 2), testOptions("host-a"))
	f.QueueJob("runpod-gpu")
	waitFor(t, "the job done", 20*time.Second, allDone(f, 1), r.logs)
	assertClean(t, f, rp.live, r)
}

// TestIdleRunnerScaledDown: a job cancelled before its runner's worker
// started leaves an idle runner beyond the target; after the idle
// timeout the scaler removes it and cancels its RunPod job.
func TestIdleRunnerScaledDown(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	cfg := testConfig(t, f, rp.URL, 2)
	cfg.ScaleSets[0].IdleTimeout = time.Second
	r := start(t, cfg, testOptions("host-a"))
	req := f.QueueJob("runpod-gpu")
	waitFor(t, "a RunPod job", 10*time.Second, func() bool { return rp.live() == 1 }, r.logs)
	if err := f.CancelJob(req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle runner gone", 10*time.Second, func() bool {
		return len(f.Runners()) == 0 && rp.live() == 0 && len(r.s.sets[0].snapshot()) == 0
	}, r.logs)
	rp.mu.Lock()
	st := rp.jobs["rp-1"].Status
	rp.mu.Unlock()
	if st != jobapi.Cancelled || !strings.Contains(r.logs.String(), "scaling down an idle runner") {
		t.Fatalf("RunPod job %s\n%s", st, r.logs)
	}
}

func TestTarget(t *testing.T) {
	s := &set{cfg: ScaleSetConfig{MinRunners: 1, MaxRunners: 3}, wake: make(chan struct{}, 1)}
	if got, _ := s.HandleDesiredRunnerCount(context.Background(), 2); got != 0 {
		t.Errorf("without the message session: target %d, want 0", got)
	}
	s.capa.lis = new(listener.Listener) // holds the session
	for assigned, want := range map[int]int{0: 1, 1: 2, 2: 3, 5: 3} {
		if got, _ := s.HandleDesiredRunnerCount(context.Background(), assigned); got != want {
			t.Errorf("%d assigned: target %d, want %d", assigned, got, want)
		}
	}
}

// TestRunErrorEchoingInput: a /run refusal that quotes the request does
// not bring the JIT config into the log.
func TestRunErrorEchoingInput(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(400)
		w.Write([]byte(`{"error": "bad input: ` + strings.ReplaceAll(string(got), `"`, `'`) + `"}`))
	}))
	defer srv.Close()
	rp := &dispatch.Client{APIURL: srv.URL, Endpoint: "ep", APIKey: secret.New("k"), HTTP: srv.Client(), Attempts: 1}
	jit := strings.Repeat("eyJKSVRDT05GSUci", 20)
	_, err := rp.Submit(context.Background(), jobapi.Input{JITConfig: &jit}, 0, 0)
	if err == nil || strings.Contains(err.Error(), jit[:32]) || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("%v", err)
	}
}
