package scaler

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	"github.com/runpod-workers/worker-github_runner/internal/scalesettest"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

const (
	testPAT    = "ghp_SCALERTESTPAT0123456789abcdefghij"
	testRPKey  = "rpa_SCALERTESTKEY0123456789abcdef"
	fastPoll   = 300 * time.Millisecond
	testPeriod = 100 * time.Millisecond
)

// rpJob is a job of the fake RunPod endpoint.
type rpJob struct {
	ID     string
	Status jobapi.Status
	Input  jobapi.Input
	Policy *jobapi.Policy
}

// fakeRunPod is an in-process RunPod endpoint API whose "workers" run
// each job at once: they start the fake runner the JIT config describes
// (online, take a job, hold it for hold, done) and end the job.
type fakeRunPod struct {
	*httptest.Server
	t    *testing.T
	hold time.Duration
	// noRun keeps jobs IN_QUEUE (no worker free).
	noRun bool

	mu      sync.Mutex
	jobs    map[string]*rpJob
	order   []string
	faults  []int // /run answers: a status, or -500 (created, then 500)
	maxLive int
	runs    int
	wg      sync.WaitGroup
}

func newFakeRunPod(t *testing.T, hold time.Duration) *fakeRunPod {
	r := &fakeRunPod{t: t, hold: hold, jobs: map[string]*rpJob{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() { r.Server.Close(); r.wg.Wait() })
	return r
}

func (r *fakeRunPod) serve(w http.ResponseWriter, req *http.Request) {
	if req.Header.Get("Authorization") != "Bearer "+testRPKey {
		w.WriteHeader(401)
		return
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/") // v2, endpoint, op, id
	if len(parts) < 3 {
		w.WriteHeader(404)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch op := parts[2]; {
	case op == "run":
		r.run(w, req)
	case op == "status" && len(parts) == 4:
		j := r.jobs[parts[3]]
		if j == nil {
			w.WriteHeader(404)
			return
		}
		json.NewEncoder(w).Encode(jobapi.Job{ID: j.ID, Status: j.Status})
	case op == "cancel" && len(parts) == 4:
		j := r.jobs[parts[3]]
		if j == nil {
			w.WriteHeader(404)
			return
		}
		if !j.Status.Terminal() {
			j.Status = jobapi.Cancelled
		}
		json.NewEncoder(w).Encode(jobapi.Job{ID: j.ID, Status: j.Status})
	default:
		w.WriteHeader(404)
	}
}

func (r *fakeRunPod) run(w http.ResponseWriter, req *http.Request) {
	fault := 0
	if len(r.faults) > 0 {
		fault, r.faults = r.faults[0], r.faults[1:]
	}
	if fault > 0 {
		w.WriteHeader(fault)
		return
	}
	var body struct {
		Input  jobapi.Input   `json:"input"`
		Policy *jobapi.Policy `json:"policy"`
	}
	b, _ := io.ReadAll(req.Body)
	if err := json.Unmarshal(b, &body); err != nil || body.Input.JITConfig == nil {
		w.WriteHeader(400)
		return
	}
	j := &rpJob{ID: fmt.Sprintf("rp-%d", len(r.order)+1), Status: jobapi.InQueue, Input: body.Input, Policy: body.Policy}
	r.jobs[j.ID] = j
	r.order = append(r.order, j.ID)
	r.runs++
	r.maxLive = max(r.maxLive, r.liveLocked())
	if !r.noRun {
		r.wg.Add(1)
		delay := time.Duration(0)
		if fault < 0 {
			delay = 500 * time.Millisecond // the scaler hears of the error first
		}
		go func() { time.Sleep(delay); r.work(j) }()
	}
	if fault < 0 {
		w.WriteHeader(-fault) // created, but the answer is an error
		return
	}
	json.NewEncoder(w).Encode(jobapi.Job{ID: j.ID, Status: j.Status})
}

func (r *fakeRunPod) liveLocked() int {
	n := 0
	for _, j := range r.jobs {
		if !j.Status.Terminal() {
			n++
		}
	}
	return n
}

func (r *fakeRunPod) live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.liveLocked()
}

func (r *fakeRunPod) stats() (runs, maxLive int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs, r.maxLive
}

func (r *fakeRunPod) setStatus(j *rpJob, s jobapi.Status) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j.Status.Terminal() {
		return false
	}
	j.Status = s
	return true
}

// work is a worker running one job: the fake runner of its JIT config.
func (r *fakeRunPod) work(j *rpJob) {
	defer r.wg.Done()
	r.setStatus(j, jobapi.InProgress)
	api, id := jitRunner(*j.Input.JITConfig)
	result := jobapi.Completed
	if !runFakeRunner(api, id, r.hold, func() bool { return r.status(j).Terminal() }) {
		result = jobapi.Failed
	}
	r.setStatus(j, result)
}

func (r *fakeRunPod) status(j *rpJob) jobapi.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return j.Status
}

// jitRunner reads the fake runner's API and id from a JIT config.
func jitRunner(jit string) (string, int) {
	raw, _ := base64.StdEncoding.DecodeString(jit)
	var files map[string]string
	json.Unmarshal(raw, &files)
	b, _ := base64.StdEncoding.DecodeString(files[".runner"])
	var rf struct {
		AgentID int    `json:"agentId"`
		FakeAPI string `json:"fakeApi"`
	}
	json.Unmarshal(b, &rf)
	return rf.FakeAPI, rf.AgentID
}

// runFakeRunner does what the fake runner binary does: online, take a
// job (asking again while the answer is 202), hold it, done. It returns
// false when the runner is unknown (removed) or stopped is true.
func runFakeRunner(api string, id int, hold time.Duration, stopped func() bool) bool {
	call := func(what, body string) int {
		resp, err := http.Post(fmt.Sprintf("%s/_fake/runners/%d/%s", api, id, what), "application/json", bytes.NewBufferString(body))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if call("online", "") != 204 {
		return false
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		switch st := call("job", ""); {
		case st == 204:
		case st == 202 && time.Now().Before(deadline) && !stopped():
			continue
		default:
			return false
		}
		break
	}
	time.Sleep(hold)
	return call("done", `{"result": "Succeeded"}`) == 204
}

// testLog is a logger into a buffer the test checks for secrets.
func testLog(t *testing.T) (*slog.Logger, *runpodtest.LogBuffer) {
	buf := &runpodtest.LogBuffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func fastGitHub() []scaleset.HTTPOption {
	c := retryablehttp.NewClient()
	c.RetryMax, c.RetryWaitMin, c.RetryWaitMax = 4, time.Millisecond, 10*time.Millisecond
	return []scaleset.HTTPOption{scaleset.WithRetryableHTTPClint(c)}
}

func testSecrets() Secrets {
	return Secrets{PAT: secret.New(testPAT), RunPodKey: secret.New(testRPKey)}
}

func newScaleSetFake(t *testing.T) *scalesettest.Fake {
	f := scalesettest.New(testPAT)
	f.LongPoll = fastPoll
	t.Cleanup(f.Close)
	return f
}
