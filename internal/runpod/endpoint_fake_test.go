package runpod

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

// The fake endpoint API (runpodtest.Endpoint) with a real JobLoop taking
// its jobs: what a dispatcher or scaler sees while a worker runs them.

const userKey = "rpa_USERKEY_fedcba9876543210"

// endpointWorker runs a JobLoop as worker pod of the endpoint until the
// test ends.
func endpointWorker(t *testing.T, p *runpodtest.Platform, ep *runpodtest.Endpoint, pod string, h Handler) {
	t.Helper()
	env := ep.Env(pod)
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.PingInterval = time.Second
	logs := &runpodtest.LogBuffer{}
	w, err := NewJobLoop(Options{Config: cfg, Handler: h, Client: p.Client(), Grace: time.Second, TakeTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), RateLimitWait: 100 * time.Millisecond, BackoffBase: 20 * time.Millisecond,
		BackoffMax: 100 * time.Millisecond, NoJobWait: 20 * time.Millisecond, PostRetryWaits: []time.Duration{10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if strings.Contains(logs.String(), userKey) || strings.Contains(logs.String(), p.APIKey) {
			t.Errorf("a key in the worker's logs:\n%s", logs)
		}
	})
}

// apiCall sends one endpoint API request with that Authorization header.
func apiCall(t *testing.T, p *runpodtest.Platform, method, url, auth, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := p.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: HTTP %d, not JSON: %q", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// fakeAPI is a dispatch client and the raw calls of one endpoint.
type fakeAPI struct {
	t   *testing.T
	p   *runpodtest.Platform
	ep  *runpodtest.Endpoint
	url string
}

func newFakeAPI(t *testing.T, p *runpodtest.Platform) *fakeAPI {
	p.LongPoll = time.Second
	ep := p.Endpoint("abc123xyz", userKey)
	return &fakeAPI{t, p, ep, ep.URL() + "/" + ep.ID()}
}

func (a *fakeAPI) call(method, op, body string) (int, map[string]any) {
	a.t.Helper()
	return apiCall(a.t, a.p, method, a.url+"/"+op, "Bearer "+userKey, body)
}

func (a *fakeAPI) run(body string) string {
	a.t.Helper()
	code, r := a.call("POST", "run", body)
	id, _ := r["id"].(string)
	if code != 200 || r["status"] != "IN_QUEUE" || id == "" {
		a.t.Fatalf("/run: HTTP %d %v", code, r)
	}
	return id
}

func (a *fakeAPI) status(id string) map[string]any {
	a.t.Helper()
	code, r := a.call("GET", "status/"+id, "")
	if code != 200 {
		a.t.Fatalf("/status/%s: HTTP %d %v", id, code, r)
	}
	return r
}

// gate is a handler that runs until released or stopped.
type gate struct {
	started chan string
	release chan struct{}
	stopped chan error
}

func newGate() *gate {
	return &gate{make(chan string, 10), make(chan struct{}), make(chan error, 10)}
}

func (g *gate) Handle(ctx context.Context, job *Job, u Updater) (any, error) {
	g.started <- job.ID
	u.Progress(map[string]string{"step": "running"})
	select {
	case <-g.release:
		var in any
		json.Unmarshal(job.Input, &in)
		return map[string]any{"echo": in}, nil
	case <-ctx.Done():
		g.stopped <- context.Cause(ctx)
		return nil, context.Cause(ctx)
	}
}

func TestFakeEndpointRunTakenCompleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		a.ep.Retention = time.Minute
		g := newGate()
		id := a.run(`{"input": {"n": 7}, "policy": {"executionTimeout": 600000, "ttl": 3600000}}`)
		if !strings.HasSuffix(id, "-u1") || len(id) != 39 {
			t.Errorf("id %q is not shaped like RunPod's", id)
		}
		if s := a.status(id); s["status"] != "IN_QUEUE" || s["workerId"] != nil {
			t.Errorf("before any worker: %v", s)
		}
		advance(1500 * time.Millisecond) // queued 1.5 s
		endpointWorker(t, p, a.ep, "pod-7", g)
		if got := <-g.started; got != id {
			t.Fatalf("the worker took %q", got)
		}
		synctest.Wait()
		s := a.status(id)
		if s["status"] != "IN_PROGRESS" || s["workerId"] != "pod-7" || s["delayTime"] != 1500.0 {
			t.Errorf("taken: %v", s)
		}
		if out, _ := s["output"].(map[string]any); out["step"] != "running" {
			t.Errorf("progress output: %v", s)
		}
		if h := a.ep.Health(); h.Jobs.InProgress != 1 || h.Workers.Running != 1 || h.Workers.Idle != 0 {
			t.Errorf("health while running: %+v", h)
		}
		advance(2 * time.Second)
		close(g.release)
		if !a.ep.WaitStatus(id, 5*time.Second, jobapi.Completed) {
			t.Fatalf("not completed: %v", a.status(id))
		}
		s = a.status(id)
		if out, _ := s["output"].(map[string]any); out["echo"].(map[string]any)["n"] != 7.0 || s["executionTime"] != 2000.0 {
			t.Errorf("completed: %v", s)
		}
		code, h := a.call("GET", "health", "")
		if code != 200 || h["jobs"].(map[string]any)["completed"] != 1.0 || h["workers"].(map[string]any)["idle"] != 1.0 {
			t.Errorf("health: %d %v", code, h)
		}
		jobs := a.ep.Jobs()
		if len(jobs) != 1 || jobs[0].WorkerID != "pod-7" || string(jobs[0].Input) != `{"n": 7}` ||
			jobs[0].Policy == nil || jobs[0].Policy.TTL != 3600000 || a.ep.Live() != 0 || a.ep.MaxLive() != 1 {
			t.Errorf("introspection: %+v live %d max %d", jobs, a.ep.Live(), a.ep.MaxLive())
		}
		// Results stay for the retention, then the job is gone.
		advance(time.Minute)
		if code, r := a.call("GET", "status/"+id, ""); code != 404 || r["error"] != "request does not exist" {
			t.Errorf("after the retention: %d %v", code, r)
		}
		if j, _ := a.ep.Job(id); !j.Expired || j.Status != jobapi.Completed {
			t.Errorf("expired job: %+v", j)
		}
	})
}

func TestFakeEndpointFailedResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		endpointWorker(t, p, a.ep, "pod-1", HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			return nil, errors.New("no GPU today")
		}))
		id := a.run(`{"input": {}}`)
		if !a.ep.WaitStatus(id, 5*time.Second, jobapi.Failed) {
			t.Fatalf("not failed: %v", a.status(id))
		}
		if s := a.status(id); !strings.Contains(s["error"].(string), "no GPU today") {
			t.Errorf("failed: %v", s)
		}
		if h := a.ep.Health(); h.Jobs.Failed != 1 || h.Jobs.Completed != 0 {
			t.Errorf("health: %+v", h)
		}
		// /retry queues it again under its id; the worker takes it again.
		if code, r := a.call("POST", "retry/"+id, ""); code != 200 || r["status"] != "IN_QUEUE" || r["id"] != id {
			t.Fatalf("retry: %d %v", code, r)
		}
		synctest.Wait()
		if j, _ := a.ep.Job(id); j.Status != jobapi.Failed || j.Retried != 1 || a.ep.Health().Jobs.Retried != 1 {
			t.Errorf("after the retry: %+v %+v", j, a.ep.Health())
		}
		if code, _ := a.call("POST", "retry/nope", ""); code != 404 {
			t.Errorf("retry of an unknown job: HTTP %d", code)
		}
		if code, _ := a.call("GET", "nothing-here", ""); code != 404 {
			t.Errorf("an unknown operation: HTTP %d", code)
		}
	})
}

// A running job cancelled: CANCELLED at once, and the worker that holds
// it sees the stop and posts no result.
func TestFakeEndpointCancelRunningStopsTheWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		g := newGate()
		endpointWorker(t, p, a.ep, "pod-1", g)
		id := a.run(`{"input": {"jitconfig": "x"}}`)
		<-g.started
		synctest.Wait()
		if code, r := a.call("POST", "cancel/"+id, ""); code != 200 || r["status"] != "CANCELLED" || r["id"] != id {
			t.Fatalf("cancel: %d %v", code, r)
		}
		select {
		case cause := <-g.stopped:
			if !strings.Contains(cause.Error(), "RunPod cancelled") {
				t.Errorf("stopped for %v", cause)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the worker never saw the cancel")
		}
		synctest.Wait()
		if s := a.status(id); s["status"] != "CANCELLED" {
			t.Errorf("after the worker stopped: %v", s)
		}
		if len(p.Done()) != 1 || p.Done()[0].Body["status"] != "IN_PROGRESS" {
			t.Errorf("the worker posted a result for a cancelled job: %+v", p.Done())
		}
		// Cancelling an ended job changes nothing.
		if code, r := a.call("POST", "cancel/"+id, ""); code != 200 || r["status"] != "CANCELLED" {
			t.Errorf("cancel again: %d %v", code, r)
		}
	})
}

func TestFakeEndpointCancelQueuedAndEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		queued := a.run(`{"input": {"q": 1}}`)
		if code, r := a.call("POST", "cancel/"+queued, ""); code != 200 || r["status"] != "CANCELLED" || r["id"] != queued {
			t.Fatalf("cancel queued: %d %v", code, r)
		}
		if s := a.status(queued); s["status"] != "CANCELLED" {
			t.Errorf("status of the cancelled job: %v", s)
		}
		// An ended /run job stays readable 30 minutes, RunPod's retention.
		advance(30*time.Minute - time.Millisecond)
		a.status(queued)
		advance(time.Millisecond)
		if code, _ := a.call("GET", "status/"+queued, ""); code != 404 {
			t.Errorf("a job 30 minutes after it ended: HTTP %d", code)
		}
		g := newGate()
		close(g.release)
		endpointWorker(t, p, a.ep, "pod-1", g)
		done := a.run(`{"input": {"q": 2}}`)
		if got := <-g.started; got != done {
			t.Fatalf("the worker took %s, the cancelled job left the queue", got)
		}
		if !a.ep.WaitStatus(done, 5*time.Second, jobapi.Completed) {
			t.Fatal("not completed")
		}
		if code, r := a.call("POST", "cancel/"+done, ""); code != 200 || r["status"] != "COMPLETED" {
			t.Errorf("cancel of a completed job: %d %v", code, r)
		}
		if code, r := a.call("POST", "retry/"+done, ""); code != 400 || r["error"] == nil {
			t.Errorf("retry of a completed job: %d %v", code, r)
		}
		if code, r := a.call("POST", "cancel/nope-u1", ""); code != 404 || r["error"] == nil {
			t.Errorf("cancel of an unknown job: %d %v", code, r)
		}
	})
}

func TestFakeEndpointExecutionTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		g := newGate()
		endpointWorker(t, p, a.ep, "pod-1", g)
		id := a.run(`{"input": {}, "policy": {"executionTimeout": 6000}}`)
		<-g.started
		advance(5900 * time.Millisecond)
		if s := a.status(id); s["status"] != "IN_PROGRESS" {
			t.Fatalf("before the timeout: %v", s)
		}
		advance(100 * time.Millisecond)
		if s := a.status(id); s["status"] != "TIMED_OUT" || s["executionTime"] != 6000.0 {
			t.Errorf("after the timeout: %v", s)
		}
		select {
		case <-g.stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("the worker never stopped the timed-out job")
		}
		// Without a policy the endpoint's default (10 minutes) applies.
		id = a.run(`{"input": {}}`)
		<-g.started
		advance(10 * time.Minute)
		if s := a.status(id); s["status"] != "TIMED_OUT" {
			t.Errorf("after the default timeout: %v", s)
		}
	})
}

// The ttl covers queue and execution: past it the job is gone, and a
// worker still running it is told to stop.
func TestFakeEndpointTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		queued := a.run(`{"input": {}, "policy": {"ttl": 10000}}`)
		advance(9 * time.Second)
		a.status(queued)
		advance(time.Second)
		if code, _ := a.call("GET", "status/"+queued, ""); code != 404 {
			t.Errorf("a queued job past its ttl: HTTP %d", code)
		}
		g := newGate()
		endpointWorker(t, p, a.ep, "pod-1", g)
		running := a.run(`{"input": {}, "policy": {"ttl": 20000, "executionTimeout": 60000}}`)
		if got := <-g.started; got != running {
			t.Fatalf("the worker took %s, an expired job", got)
		}
		advance(20 * time.Second)
		if code, _ := a.call("GET", "status/"+running, ""); code != 404 {
			t.Errorf("a running job past its ttl: HTTP %d", code)
		}
		select {
		case <-g.stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("the worker never stopped the expired job")
		}
		if j, _ := a.ep.Job(running); !j.Expired || j.Status != jobapi.TimedOut || a.ep.Live() != 0 {
			t.Errorf("expired: %+v, %d live", j, a.ep.Live())
		}
	})
}

func TestFakeEndpointAuthAndRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		for _, auth := range []string{"", "Bearer wrong", "Basic " + userKey, "bearer" + userKey} {
			if code, r := apiCall(t, p, "POST", a.url+"/run", auth, `{"input":{}}`); code != 401 || strings.Contains(r["error"].(string), userKey) {
				t.Errorf("Authorization %q: %d %v", auth, code, r)
			}
		}
		if a.ep.Unauthorized() != 4 || len(a.ep.Jobs()) != 0 {
			t.Errorf("%d refused, %d jobs", a.ep.Unauthorized(), len(a.ep.Jobs()))
		}
		if code, _ := apiCall(t, p, "GET", a.url+"/health", userKey, ""); code != 200 {
			t.Errorf("the bare key: HTTP %d", code)
		}
		if code, _ := apiCall(t, p, "GET", a.ep.URL()+"/other/health", "Bearer "+userKey, ""); code != 404 {
			t.Errorf("unknown endpoint: HTTP %d", code)
		}
		for body, want := range map[string]string{
			`not json`:        "JSON object",
			`{"x": 1}`:        "missing input",
			`{"input": null}`: "missing input",
			`{"input": {}, "policy": {"executionTimeout": 5000}}`: "executionTimeout",
			`{"input": {}, "policy": {"ttl": 9999}}`:              "ttl",
			`{"input": {}, "policy": {"ttl": 604800001}}`:         "ttl",
			`{"input": {}, "policy": "soon"}`:                     "policy",
		} {
			if code, r := a.call("POST", "run", body); code != 400 || !strings.Contains(r["error"].(string), want) {
				t.Errorf("%s: %d %v", body, code, r)
			}
		}
		big := `{"input": "` + strings.Repeat("x", 10<<20) + `"}`
		if code, _ := a.call("POST", "run", big); code != 413 {
			t.Errorf("an 10 MB input: HTTP %d", code)
		}
		if len(a.ep.Jobs()) != 0 {
			t.Errorf("refused requests created jobs: %+v", a.ep.Jobs())
		}
	})
}

// "/run answers 500, then succeeds" and "the job was created but the
// answer was lost", as dispatch sees them.
func TestFakeEndpointFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		a.ep.Fail(runpodtest.OpRun, 500, runpodtest.Drop)
		if code, r := a.call("POST", "run", `{"input": {}}`); code != 500 || r["error"] == nil {
			t.Errorf("first /run: %d %v", code, r)
		}
		if len(a.ep.Jobs()) != 0 {
			t.Fatal("a refused /run created a job")
		}
		req, _ := http.NewRequest("POST", a.url+"/run", strings.NewReader(`{"input": {}}`))
		req.Header.Set("Authorization", "Bearer "+userKey)
		if resp, err := p.Client().Do(req); err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("a lost answer: %v %v", resp, err)
		}
		if jobs := a.ep.Jobs(); len(jobs) != 1 || jobs[0].Status != jobapi.InQueue || a.ep.Calls(runpodtest.OpRun) != 2 {
			t.Errorf("the dropped /run: %+v, %d calls", jobs, a.ep.Calls(runpodtest.OpRun))
		}
		a.run(`{"input": {}}`)
		a.ep.Fail(runpodtest.OpStatus, 503, 429)
		id := a.ep.Jobs()[0].ID
		for _, want := range []int{503, 429, 200} {
			if code, r := a.call("GET", "status/"+id, ""); code != want || code == 200 && r["status"] != "IN_QUEUE" {
				t.Errorf("status: %d %v, want HTTP %d", code, r, want)
			}
		}
		if a.ep.Calls(runpodtest.OpStatus) != 3 || len(a.ep.Jobs()) != 2 {
			t.Errorf("%d status calls, %d jobs", a.ep.Calls(runpodtest.OpStatus), len(a.ep.Jobs()))
		}
	})
}

func TestFakeEndpointPurgeRunSyncStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		a.run(`{"input": {}}`)
		a.run(`{"input": {}}`)
		if code, r := a.call("POST", "purge-queue", ""); code != 200 || r["removed"] != 2.0 || r["status"] != "completed" {
			t.Errorf("purge: %d %v", code, r)
		}
		if a.ep.Live() != 0 || a.ep.MaxLive() != 2 {
			t.Errorf("after the purge: %d live, %d max", a.ep.Live(), a.ep.MaxLive())
		}
		endpointWorker(t, p, a.ep, "pod-1", HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			u.Stream("a")
			u.Stream("b")
			select {
			case <-time.After(3 * time.Second):
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}))
		code, r := a.call("POST", "runsync", `{"input": {}}`)
		id, _ := r["id"].(string)
		if code != 200 || r["status"] != "COMPLETED" || r["output"] != "done" || !strings.HasPrefix(id, "sync-") {
			t.Fatalf("runsync: %d %v", code, r)
		}
		if code, r := a.call("GET", "stream/"+id, ""); code != 200 || len(r["stream"].([]any)) != 2 {
			t.Errorf("stream: %d %v", code, r)
		}
		advance(time.Minute)
		if code, _ := a.call("GET", "status/"+id, ""); code != 404 {
			t.Errorf("a runsync result after a minute: HTTP %d", code)
		}
		// A runsync that outlasts its wait answers the job as it stands.
		code, r = a.call("POST", "runsync?wait=1000", `{"input": {}}`)
		if code != 200 || r["status"] != "IN_PROGRESS" {
			t.Errorf("runsync past its wait: %d %v", code, r)
		}
	})
}

// Two workers of one endpoint: each takes one job, and a cancel reaches
// the worker that holds the job, not the other.
func TestFakeEndpointTwoWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		a := newFakeAPI(t, p)
		g1, g2 := newGate(), newGate()
		endpointWorker(t, p, a.ep, "pod-1", g1)
		endpointWorker(t, p, a.ep, "pod-2", g2)
		first := a.run(`{"input": {}}`)
		second := a.run(`{"input": {}}`)
		<-g1.started
		<-g2.started
		synctest.Wait()
		j1, _ := a.ep.Job(first)
		j2, _ := a.ep.Job(second)
		if j1.WorkerID == j2.WorkerID || j1.Status != jobapi.InProgress || j2.Status != jobapi.InProgress {
			t.Fatalf("%+v %+v", j1, j2)
		}
		if h := a.ep.Health(); h.Workers.Running != 2 || h.Jobs.InProgress != 2 {
			t.Errorf("health: %+v", h)
		}
		a.call("POST", "cancel/"+first, "")
		holder, other := g1, g2
		if j1.WorkerID == "pod-2" {
			holder, other = g2, g1
		}
		select {
		case <-holder.stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("the holder never stopped")
		}
		close(other.release)
		if !a.ep.WaitStatus(second, 5*time.Second, jobapi.Completed) {
			t.Errorf("the other job: %+v", a.status(second))
		}
		a.ep.SetWorkers(&runpodtest.HealthWorkers{Ready: 3, Throttled: 2})
		if _, r := a.call("GET", "health", ""); r["workers"].(map[string]any)["throttled"] != 2.0 {
			t.Errorf("scripted workers: %v", r)
		}
	})
}

// Over loopback, a dropped answer is a closed connection.
func TestFakeEndpointLoopbackDrop(t *testing.T) {
	p := runpodtest.New()
	defer p.Close()
	a := newFakeAPI(t, p)
	a.ep.Fail(runpodtest.OpRun, runpodtest.Drop)
	req, _ := http.NewRequest("POST", a.url+"/run", strings.NewReader(`{"input": {}}`))
	req.Header.Set("Authorization", "Bearer "+userKey)
	if resp, err := p.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a dropped answer arrived: HTTP %d", resp.StatusCode)
	}
	if len(a.ep.Jobs()) != 1 {
		t.Errorf("the dropped /run made %d jobs", len(a.ep.Jobs()))
	}
	g := newGate()
	close(g.release)
	endpointWorker(t, p, a.ep, "pod-1", g)
	id := a.ep.Jobs()[0].ID
	if !a.ep.WaitStatus(id, 10*time.Second, jobapi.Completed) {
		t.Fatalf("over loopback: %+v", a.status(id))
	}
}
