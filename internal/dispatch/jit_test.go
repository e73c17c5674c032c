package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

const testPAT = "ghp_JITDISPATCH0123456789abcdefghij"

// endpoint is RunPod's endpoint API for one endpoint, whose jobs a test
// moves along: onRun decides what happens to a job once submitted.
type endpoint struct {
	*httptest.Server
	mu        sync.Mutex
	inputs    []map[string]any
	status    map[string]string
	errs      map[string]string
	cancelled []string
	noHealth  bool
	onRun     func(id string, input map[string]any)
	// cancelDelay holds each /cancel this long (a slow RunPod).
	cancelDelay time.Duration
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{status: map[string]string{}, errs: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/ep1/run", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Input map[string]any `json:"input"`
		}
		json.NewDecoder(r.Body).Decode(&b)
		e.mu.Lock()
		e.inputs = append(e.inputs, b.Input)
		id := fmt.Sprintf("job-%d", len(e.inputs))
		e.status[id] = "IN_QUEUE"
		on := e.onRun
		e.mu.Unlock()
		if on != nil {
			go on(id, b.Input)
		}
		json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "IN_QUEUE"})
	})
	mux.HandleFunc("GET /v2/ep1/status/{id}", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		st, ok := e.status[r.PathValue("id")]
		if !ok {
			http.Error(w, `{"error":"request does not exist"}`, 404)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "status": st, "error": e.errs[r.PathValue("id")]})
	})
	mux.HandleFunc("POST /v2/ep1/cancel/{id}", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		delay := e.cancelDelay
		e.mu.Unlock()
		time.Sleep(delay)
		e.mu.Lock()
		defer e.mu.Unlock()
		id := r.PathValue("id")
		if _, ok := e.status[id]; !ok {
			http.Error(w, `{"error":"request does not exist"}`, 404)
			return
		}
		e.cancelled = append(e.cancelled, id)
		e.status[id] = "CANCELLED"
		json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "CANCELLED"})
	})
	mux.HandleFunc("GET /v2/ep1/health", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.noHealth {
			http.Error(w, `{"error":"not found"}`, 404)
			return
		}
		fmt.Fprint(w, `{"jobs":{"inQueue":1,"inProgress":0},"workers":{"idle":0,"running":0}}`)
	})
	e.Server = httptest.NewServer(mux)
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) set(id, status, errMsg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status[id], e.errs[id] = status, errMsg
}

func (e *endpoint) forget(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.status, id)
}

func (e *endpoint) running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for id, st := range e.status {
		if st == "IN_QUEUE" || st == "IN_PROGRESS" {
			out = append(out, id)
		}
	}
	return out
}

// connect is what a worker does with a JIT config: the runner it starts
// connects, and GitHub lists it online.
func connect(t *testing.T, gh *githubtest.GitHub, id float64) {
	resp, err := http.Post(fmt.Sprintf("%s/_fake/runners/%d/online", gh.URL, int64(id)), "application/json", nil)
	if err != nil {
		t.Error(err)
		return
	}
	resp.Body.Close()
}

// jitConfigRunnerID reads the runner id out of the fake's JIT config.
func jitConfigRunnerID(t *testing.T, gh *githubtest.GitHub, name string) float64 {
	for _, r := range gh.Registered() {
		if r.Name == name {
			return float64(r.ID)
		}
	}
	t.Errorf("no runner %s registered", name)
	return 0
}

func launcher(t *testing.T, gh *githubtest.GitHub, e *endpoint, scope string) *Launcher {
	t.Helper()
	c, err := GitHubClient(context.Background(), scope, Credential{PAT: secret.New(testPAT)}, github.Options{APIURL: gh.URL, TestOnlyAllowLoopbackHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Backoff, c.MaxWait = time.Millisecond, 10*time.Millisecond
	return &Launcher{
		RunPod:  &Client{APIURL: e.URL + "/v2", Endpoint: "ep1", APIKey: secret.New("rpa_JITKEY"), Attempts: 2, Backoff: time.Millisecond},
		GitHub:  c,
		PollMin: 5 * time.Millisecond, PollMax: 20 * time.Millisecond, CleanupTimeout: 5 * time.Second,
	}
}

var jitOpts = JITOptions{Labels: []string{"runpod-9-1-abcd"}, IdleTimeout: 5 * time.Minute, JobTimeout: time.Hour, StartupTimeout: 5 * time.Second}

// The endpoint gets the runner's JIT config and timeouts, never a GitHub
// credential; the runner has exactly one label, its unique one, so a job
// asking for self-hosted (or any shared label) cannot take it; Start
// returns once GitHub lists the runner online.
func TestJITStartSendsOnlyTheJITConfigAndWaitsForOnline(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	e.onRun = func(id string, in map[string]any) {
		time.Sleep(50 * time.Millisecond) // queued a while
		e.set(id, "IN_PROGRESS", "")
		time.Sleep(50 * time.Millisecond) // the runner starts
		connect(t, gh, jitConfigRunnerID(t, gh, in["runner_name"].(string)))
	}
	var progress strings.Builder
	l := launcher(t, gh, e, "octo")
	l.Progress = &progress
	o := jitOpts
	o.RunnerUser = "root"
	rs, err := l.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, progress.String())
	}
	if len(rs) != 1 || rs[0].JobID != "job-1" || rs[0].Label != "runpod-9-1-abcd" || rs[0].RunnerID == 0 {
		t.Fatalf("runners %+v", rs)
	}
	if r, ok := gh.Runner(rs[0].RunnerID); !ok || r.Status != "online" {
		t.Errorf("Start returned before GitHub listed the runner online: %+v", r)
	}
	in := e.inputs[0]
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range in {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"idle_timeout", "jitconfig", "job_timeout", "runner_name", "runner_user"}) {
		t.Errorf("job input has %v, want only the JIT config, the runner's name and the worker's settings", keys)
	}
	if in["jitconfig"] != gh.Issued()[0] || in["runner_name"] != "runpod-9-1-abcd" || in["idle_timeout"] != 300.0 || in["runner_user"] != "root" {
		t.Errorf("input %v", in)
	}
	b, _ := json.Marshal(e.inputs)
	if strings.Contains(string(b), testPAT) || strings.Contains(progress.String(), gh.Issued()[0]) {
		t.Error("a credential or the JIT config leaked into the input or the progress")
	}
	reg := gh.Registered()
	if len(reg) != 1 || !slices.Equal(reg[0].Labels, []string{"runpod-9-1-abcd"}) || reg[0].GroupID != 1 {
		t.Errorf("registered %+v: want exactly the unique label, default group", reg)
	}
	for _, runsOn := range [][]string{{"self-hosted"}, {"self-hosted", "runpod-9-1-abcd"}, {"linux"}, {"runpod"}} {
		if gh.CanAssign(runsOn, rs[0].RunnerID) {
			t.Errorf("a job with runs-on %v could take the runner", runsOn)
		}
	}
	if !gh.CanAssign([]string{"runpod-9-1-abcd"}, rs[0].RunnerID) {
		t.Error("the intended job cannot take the runner")
	}
	if !strings.Contains(progress.String(), "IN_QUEUE") {
		t.Errorf("no progress line:\n%s", progress.String())
	}
}

// count: N runners, each with its own single label, each with its own
// RunPod job; in the runner group asked for.
func TestJITStartSeveralRunnersInAGroup(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	e.onRun = func(id string, in map[string]any) {
		e.set(id, "IN_PROGRESS", "")
		connect(t, gh, jitConfigRunnerID(t, gh, in["runner_name"].(string)))
	}
	o := jitOpts
	o.Labels, o.RunnerGroup = []string{"l-1", "l-2", "l-3"}, "gpu-runners"
	rs, err := launcher(t, gh, e, "octo").Start(context.Background(), o)
	if err != nil || len(rs) != 3 {
		t.Fatalf("%v %+v", err, rs)
	}
	for i, r := range gh.Registered() {
		if want := fmt.Sprintf("l-%d", i+1); !slices.Equal(r.Labels, []string{want}) || r.GroupID != 7 || rs[i].Label != want || rs[i].RunnerID != r.ID {
			t.Errorf("runner %d: %+v / %+v", i, r, rs[i])
		}
	}
	if len(e.inputs) != 3 {
		t.Errorf("%d RunPod jobs, want 3", len(e.inputs))
	}
	// Repository runners have no groups: refused before anything is made.
	if _, err := launcher(t, gh, e, "octo/repo").Start(context.Background(), o); err == nil || !strings.Contains(err.Error(), "runner group") {
		t.Errorf("group on a repository: %v", err)
	}
}

// Nobody takes the job (no capacity): Start fails within its startup
// timeout saying the job is still queued, cancels the job and deletes the
// runner.
func TestJITStartNoCapacity(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	o := jitOpts
	o.StartupTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := launcher(t, gh, e, "octo").Start(context.Background(), o)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Start took %v with a 300ms startup timeout", took)
	}
	if err == nil || !strings.Contains(err.Error(), "IN_QUEUE") || !strings.Contains(err.Error(), "no capacity") || !strings.Contains(err.Error(), "cleaned up") {
		t.Fatalf("error %v", err)
	}
	assertNothingLeft(t, gh, e)
}

func assertNothingLeft(t *testing.T, gh *githubtest.GitHub, e *endpoint) {
	t.Helper()
	if rs := gh.Runners(); len(rs) != 0 {
		t.Errorf("runners left on GitHub: %+v", rs)
	}
	if j := e.running(); len(j) != 0 {
		t.Errorf("RunPod jobs left: %v", j)
	}
}

// The worker fails (a bad JIT config, an old image): Start fails with the
// worker's error, at once, and cleans up.
func TestJITStartWorkerFails(t *testing.T) {
	for name, tc := range map[string]struct{ status, msg, want string }{
		"bad config": {"FAILED", "runner: invalid JIT config", "the worker says: runner: invalid JIT config"},
		"old image":  {"FAILED", "invalid input: unknown field jitconfig (known fields: ...)", "update it, or use registration: endpoint"},
		"timed out":  {"TIMED_OUT", "", "execution timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			gh := githubtest.New(testPAT)
			defer gh.Close()
			e := newEndpoint(t)
			e.onRun = func(id string, _ map[string]any) { e.set(id, tc.status, tc.msg) }
			start := time.Now()
			_, err := launcher(t, gh, e, "octo").Start(context.Background(), jitOpts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || time.Since(start) > 3*time.Second {
				t.Fatalf("after %v: %v", time.Since(start), err)
			}
			if rs := gh.Runners(); len(rs) != 0 {
				t.Errorf("runners left: %+v", rs)
			}
		})
	}
}

// A /run whose answer is lost: not sent again, and the runner is deleted
// so that the job, if RunPod created it, fails at once.
func TestJITStartRunAnswerLost(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/health") {
			fmt.Fprint(w, `{}`)
			return
		}
		http.Error(w, "bad gateway", 502)
	}))
	defer srv.Close()
	l := launcher(t, gh, newEndpoint(t), "octo")
	l.RunPod.APIURL = srv.URL + "/v2"
	_, err := l.Start(context.Background(), jitOpts)
	if err == nil || !strings.Contains(err.Error(), "may have created the job") || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("%v", err)
	}
	if rs := gh.Runners(); len(rs) != 0 {
		t.Errorf("runners left: %+v", rs)
	}
}

// A runner GitHub lists with more labels than its unique one (a GitHub
// that added default labels) is not used: other jobs could take it.
func TestJITStartRefusesARunnerWithSharedLabels(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	gh.JITExtraLabels = []string{"self-hosted", "Linux", "X64"}
	e := newEndpoint(t)
	e.onRun = func(id string, in map[string]any) {
		e.set(id, "IN_PROGRESS", "")
		connect(t, gh, jitConfigRunnerID(t, gh, in["runner_name"].(string)))
	}
	_, err := launcher(t, gh, e, "octo").Start(context.Background(), jitOpts)
	if err == nil || !strings.Contains(err.Error(), "self-hosted") || !strings.Contains(err.Error(), "not used") {
		t.Fatalf("%v", err)
	}
	assertNothingLeft(t, gh, e)
}

// A wrong API key or endpoint id fails before anything is registered.
func TestJITStartChecksTheEndpointFirst(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	l := launcher(t, gh, newEndpoint(t), "octo")
	l.RunPod.Endpoint = "nope"
	if _, err := l.Start(context.Background(), jitOpts); err == nil || !strings.Contains(err.Error(), "no such endpoint") {
		t.Fatalf("%v", err)
	}
	if len(gh.Registered()) != 0 {
		t.Error("a runner was registered for an endpoint that does not exist")
	}
}

// A workflow cancelled while Start waits: both sides cleaned up.
func TestJITStartCancelledWhileWaiting(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	ctx, cancel := context.WithCancel(context.Background())
	e.onRun = func(string, map[string]any) { time.Sleep(50 * time.Millisecond); cancel() }
	_, err := launcher(t, gh, e, "octo").Start(ctx, jitOpts)
	if err == nil || !strings.Contains(err.Error(), "stopped while waiting") {
		t.Fatalf("%v", err)
	}
	assertNothingLeft(t, gh, e)
}

// Stop never fails for what is already gone: a job RunPod forgot (404
// while the endpoint answers), a runner GitHub removed. A 404 from an
// endpoint that does not answer /health is an error (a wrong endpoint id
// must not pass for a stopped job).
func TestStopCleansBothSides(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	e := newEndpoint(t)
	e.set("job-run", "IN_PROGRESS", "")
	e.set("job-done", "COMPLETED", "")
	busy := gh.AddRunner("octo", "r-busy", "x")
	idle := gh.AddRunner("octo", "r-idle", "y")
	gh.SetRunner(busy, "online", true)
	l := launcher(t, gh, e, "octo")
	go func() { time.Sleep(100 * time.Millisecond); gh.SetRunner(busy, "online", false) }()
	done, err := l.Stop(context.Background(), []string{"job-run", "job-done", "job-forgotten"}, []int64{busy, idle, 99999})
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	report := strings.Join(done, "\n")
	for _, want := range []string{"job-run: cancelled", "job-done: already ended (COMPLETED)", "job-forgotten: RunPod no longer knows it", "r-busy", "r-idle", "99999: GitHub already removed it"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	assertNothingLeft(t, gh, e)
	e.mu.Lock()
	e.noHealth = true
	e.mu.Unlock()
	if _, err := l.Stop(context.Background(), []string{"job-forgotten"}, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404 from an endpoint that does not answer: %v", err)
	}
}

// An answer that echoes the job's input (a 400 quoting it) does not put
// the JIT config in Start's error or progress.
func TestJITStartRedactsTheConfig(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/health") {
			fmt.Fprint(w, `{}`)
			return
		}
		b, _ := io.ReadAll(r.Body)
		http.Error(w, `{"error":"bad input: `+string(b)+`"}`, 400)
	}))
	defer srv.Close()
	var progress strings.Builder
	l := launcher(t, gh, newEndpoint(t), "octo")
	l.RunPod.APIURL, l.Progress = srv.URL+"/v2", &progress
	_, err := l.Start(context.Background(), jitOpts)
	jit := gh.Issued()[0]
	if err == nil || strings.Contains(err.Error()+progress.String(), jit[:40]) || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("%v\n%s", err, progress.String())
	}
}

// A registration whose answers are all lost may have registered the
// runner anyway: Start finds it by name and deletes it.
func TestJITStartRemovesARunnerWhoseRegistrationWasLost(t *testing.T) {
	gh := githubtest.New(testPAT)
	defer gh.Close()
	gh.Fail(githubtest.Fault{Match: "generate-jitconfig", Lost: true, Times: 100})
	e := newEndpoint(t)
	_, err := launcher(t, gh, e, "octo").Start(context.Background(), jitOpts)
	if err == nil || !strings.Contains(err.Error(), "register runner") || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("%v", err)
	}
	if len(gh.Registered()) == 0 {
		t.Fatal("the fault registered nothing: the test tests nothing")
	}
	assertNothingLeft(t, gh, e)
	if len(e.inputs) != 0 {
		t.Errorf("%d RunPod jobs submitted", len(e.inputs))
	}
}
