package runpodtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// Endpoint is the client side of one RunPod serverless endpoint, as
// https://api.runpod.ai/v2/{id}/ serves it: /run, /runsync, /status/{id},
// /stream/{id}, /cancel/{id}, /retry/{id}, /health and /purge-queue, bridged to the
// Platform's worker side. A job /run creates is what a worker polling
// Env's take URL takes (IN_PROGRESS, its workerId that worker's id); the
// result it posts to job-done becomes the job's status; a cancelled or
// timed-out job shows up in that worker's job-stop polls.
//
// Facts followed (RunPod's "Send API requests" and "Operation reference"
// pages): the key is accepted as "Bearer <key>" or bare; the policy's
// executionTimeout (default: the endpoint's, 10 minutes) must be over
// 5000 ms and ends a running job as TIMED_OUT; its ttl (default 24 h,
// 10 s to 1 week) is the job's whole lifetime, queue and execution, after
// which the job is gone (404); results stay 30 minutes after a /run job
// ends, 1 minute after a /runsync one. Unconfirmed, chosen: the bodies of
// 401 and 404 answers ({"error": ...}), purged jobs becoming CANCELLED, and
// a job whose ttl ends while running being stopped on its worker.
type Endpoint struct {
	p   *Platform
	id  string
	key string

	// ExecutionTimeout is the endpoint's execution timeout, for jobs
	// whose policy sets none (RunPod's default: 10 minutes; 0: none).
	ExecutionTimeout time.Duration
	// Retention is how long a /run job stays readable once it ended
	// (RunPod: 30 minutes); SyncRetention the same for /runsync (1 minute).
	Retention, SyncRetention time.Duration

	// Guarded by p.mu.
	jobs    map[string]*endpointJob // readable jobs
	all     []*endpointJob          // every job, in order
	faults  map[string][]int
	calls   map[string]int
	unauth  int
	maxLive int
	workers *HealthWorkers
}

// EndpointJob is a job as the fake holds it, for tests to inspect.
type EndpointJob struct {
	ID       string
	Status   jobapi.Status
	Input    json.RawMessage // as the request sent it
	Policy   *jobapi.Policy  // as the request sent it; nil when none
	Sync     bool            // submitted with /runsync
	WorkerID string          // the worker that took it
	Retried  int             // times /retry queued it again
	Output   any
	Error    string
	// When it was submitted, taken, and ended (zero: not yet).
	Submitted, Started, Finished time.Time
	// Expired: its ttl or result retention elapsed; /status answers 404.
	Expired bool
}

type endpointJob struct {
	EndpointJob
	body   string // what a take answers
	timers []*time.Timer
	stream []any // chunks not yet read by /stream
}

// Drop, as a status for Fail, makes the operation happen and its answer
// get lost: the connection closes without one.
const Drop = 0

// The operations, as Fail and Calls name them.
const (
	OpRun        = "run"
	OpRunSync    = "runsync"
	OpStatus     = "status"
	OpStream     = "stream"
	OpCancel     = "cancel"
	OpHealth     = "health"
	OpPurgeQueue = "purge-queue"
	OpRetry      = "retry"
)

var apiOps = map[string]bool{OpRun: true, OpRunSync: true, OpStatus: true, OpStream: true, OpCancel: true, OpHealth: true,
	OpPurgeQueue: true, OpRetry: true}

// Limits RunPod documents.
const (
	maxRunPayload     = 10 << 20
	maxRunSyncPayload = 20 << 20
	minExecutionMs    = 5000
	minTTLMs          = 10_000
	maxTTLMs          = 7 * 24 * 3600 * 1000
	defaultTTL        = 24 * time.Hour
)

// Health, HealthJobs and HealthWorkers are the endpoint API's /health
// answer (jobapi's types: the fake speaks the contract the client reads).
// The fake counts Idle and Running from the workers seen lately
// (Platform.WorkerSeen); SetWorkers scripts every worker count.
type (
	Health        = jobapi.Health
	HealthJobs    = jobapi.HealthJobs
	HealthWorkers = jobapi.HealthWorkers
)

// Endpoint returns the endpoint with that id, creating it: its API
// answers requests carrying apiKey. One id has one key.
func (p *Platform) Endpoint(id, apiKey string) *Endpoint {
	if id == "" || strings.Contains(id, "/") || apiKey == "" {
		panic("runpodtest: an endpoint needs an id without / and an API key")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.endpoints[id]; e != nil {
		if e.key != apiKey {
			panic("runpodtest: endpoint " + id + " exists with another API key")
		}
		return e
	}
	e := &Endpoint{p: p, id: id, key: apiKey, ExecutionTimeout: 10 * time.Minute, Retention: 30 * time.Minute,
		SyncRetention: time.Minute, jobs: map[string]*endpointJob{}, faults: map[string][]int{}, calls: map[string]int{}}
	p.endpoints[id] = e
	return e
}

// ID is the endpoint's id.
func (e *Endpoint) ID() string { return e.id }

// URL is the API's base, ending in /v2, as https://api.runpod.ai/v2 is:
// requests go to URL()/<id>/run. Reach it with the Platform's Client.
func (e *Endpoint) URL() string { return e.p.base + "/v2" }

// Env is the environment of a worker of this endpoint, as RunPod sets it.
func (e *Endpoint) Env(podID string) map[string]string { return e.p.env(e.id, podID) }

// Fail makes the next requests of op (OpRun, OpStatus...) answer these
// statuses, in order, without acting; Drop acts and loses the answer.
func (e *Endpoint) Fail(op string, statuses ...int) {
	if !apiOps[op] {
		panic("runpodtest: no endpoint operation " + op)
	}
	for _, st := range statuses {
		if st != Drop && (st < 400 || st > 599) {
			panic(fmt.Sprintf("runpodtest: Fail takes Drop or an HTTP error status, not %d", st))
		}
	}
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	e.faults[op] = append(e.faults[op], statuses...)
}

// Calls counts the requests of op that reached the endpoint and passed
// authentication, faulted ones included.
func (e *Endpoint) Calls(op string) int {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return e.calls[op]
}

// Unauthorized counts requests refused for their API key.
func (e *Endpoint) Unauthorized() int {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return e.unauth
}

// Jobs returns every job the endpoint ever created, in order, expired ones
// included.
func (e *Endpoint) Jobs() []EndpointJob {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	out := make([]EndpointJob, len(e.all))
	for i, j := range e.all {
		out[i] = j.EndpointJob
	}
	return out
}

// Job returns one job by id, expired or not.
func (e *Endpoint) Job(id string) (EndpointJob, bool) {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	for _, j := range e.all {
		if j.ID == id {
			return j.EndpointJob, true
		}
	}
	return EndpointJob{}, false
}

// Live counts the jobs queued or in progress now; MaxLive the most there
// ever were at once.
func (e *Endpoint) Live() int {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return e.live()
}

// MaxLive is the most jobs that were queued or in progress at once.
func (e *Endpoint) MaxLive() int {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return e.maxLive
}

// Health is what /health answers now.
func (e *Endpoint) Health() Health {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return e.health()
}

// SetWorkers makes /health report these worker counts (nil: count the
// workers seen, the default).
func (e *Endpoint) SetWorkers(w *HealthWorkers) {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	e.workers = w
}

// WaitStatus waits until the job has one of these statuses (true), or
// timeout passes (false).
func (e *Endpoint) WaitStatus(id string, timeout time.Duration, want ...jobapi.Status) bool {
	deadline := time.Now().Add(timeout)
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	for {
		for _, j := range e.all {
			if j.ID == id && slices.Contains(want, j.Status) {
				return true
			}
		}
		if !time.Now().Before(deadline) {
			return false
		}
		e.p.waitUntil(context.Background(), deadline)
	}
}

// --- HTTP side ---

func (p *Platform) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/{ep}/run", p.op(OpRun, func(e *Endpoint, w http.ResponseWriter, r *http.Request) { e.submit(w, r, false) }))
	mux.HandleFunc("POST /v2/{ep}/runsync", p.op(OpRunSync, func(e *Endpoint, w http.ResponseWriter, r *http.Request) { e.submit(w, r, true) }))
	mux.HandleFunc("GET /v2/{ep}/status/{id}", p.op(OpStatus, (*Endpoint).status))
	mux.HandleFunc("POST /v2/{ep}/status/{id}", p.op(OpStatus, (*Endpoint).status))
	mux.HandleFunc("GET /v2/{ep}/stream/{id}", p.op(OpStream, (*Endpoint).streamed))
	mux.HandleFunc("POST /v2/{ep}/stream/{id}", p.op(OpStream, (*Endpoint).streamed))
	mux.HandleFunc("POST /v2/{ep}/cancel/{id}", p.op(OpCancel, (*Endpoint).cancel))
	mux.HandleFunc("GET /v2/{ep}/health", p.op(OpHealth, (*Endpoint).healthAnswer))
	mux.HandleFunc("POST /v2/{ep}/purge-queue", p.op(OpPurgeQueue, (*Endpoint).purge))
	mux.HandleFunc("POST /v2/{ep}/retry/{id}", p.op(OpRetry, (*Endpoint).retry))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, jobapi.ErrorAnswer{Error: "no such operation"})
	})
	return mux
}

// op finds the endpoint (404), checks the key (401), counts the call and
// applies a scripted fault before calling f.
func (p *Platform) op(name string, f func(*Endpoint, http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		e := p.endpoints[r.PathValue("ep")]
		if e == nil {
			p.mu.Unlock()
			writeJSON(w, http.StatusNotFound, jobapi.ErrorAnswer{Error: "endpoint not found"})
			return
		}
		if !e.authorized(r.Header.Get("Authorization")) {
			e.unauth++
			p.mu.Unlock()
			writeJSON(w, http.StatusUnauthorized, jobapi.ErrorAnswer{Error: "unauthorized: bad or missing API key"})
			return
		}
		e.calls[name]++
		fault, faulted := -1, len(e.faults[name]) > 0
		if faulted {
			fault, e.faults[name] = e.faults[name][0], e.faults[name][1:]
		}
		p.mu.Unlock()
		switch {
		case !faulted:
			f(e, w, r)
		case fault == Drop:
			f(e, discard{}, r)
			dropConnection(w)
		default:
			writeJSON(w, fault, jobapi.ErrorAnswer{Error: fmt.Sprintf("injected failure (HTTP %d)", fault)})
		}
	}
}

// authorized accepts "Bearer <key>" and the bare key, as RunPod does.
func (e *Endpoint) authorized(h string) bool {
	if k, ok := strings.CutPrefix(h, "Bearer "); ok {
		h = k
	}
	return h == e.key
}

// discard is a ResponseWriter whose answer goes nowhere.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, jobapi.ErrorAnswer{Error: msg})
}

func (e *Endpoint) submit(w http.ResponseWriter, r *http.Request, sync bool) {
	limit := int64(maxRunPayload)
	if sync {
		limit = maxRunSyncPayload
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		badRequest(w, "reading the body: "+err.Error())
		return
	}
	if int64(len(raw)) > limit {
		writeJSON(w, http.StatusRequestEntityTooLarge, jobapi.ErrorAnswer{Error: fmt.Sprintf("payload over %d MB", limit>>20)})
		return
	}
	fields, policy, msg := parseRun(raw)
	if msg != "" {
		badRequest(w, msg)
		return
	}
	id := newJobID(sync)
	fields["id"], _ = json.Marshal(id)
	body, _ := json.Marshal(fields)
	e.p.mu.Lock()
	e.add(id, fields["input"], policy, string(body), sync)
	e.p.mu.Unlock()
	if !sync {
		writeJSON(w, http.StatusOK, jobapi.Job{ID: id, Status: jobapi.InQueue})
		return
	}
	e.awaitEnd(r, id)
	e.answer(w, id)
}

// parseRun checks a /run body: a JSON object with an input and an optional
// valid policy. msg says what is wrong.
func parseRun(raw []byte) (fields map[string]json.RawMessage, policy *jobapi.Policy, msg string) {
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, nil, "the body must be a JSON object"
	}
	if in, ok := fields["input"]; !ok || string(in) == "null" {
		return nil, nil, "missing input"
	}
	pol, ok := fields["policy"]
	if !ok || string(pol) == "null" {
		return fields, nil, ""
	}
	policy = &jobapi.Policy{}
	if err := json.Unmarshal(pol, policy); err != nil {
		return nil, nil, "policy: " + err.Error()
	}
	switch {
	case policy.ExecutionTimeout != 0 && policy.ExecutionTimeout <= minExecutionMs:
		return nil, nil, fmt.Sprintf("policy.executionTimeout must be more than %d ms", minExecutionMs)
	case policy.TTL != 0 && (policy.TTL < minTTLMs || policy.TTL > maxTTLMs):
		return nil, nil, fmt.Sprintf("policy.ttl must be between %d ms and %d ms (1 week)", minTTLMs, maxTTLMs)
	}
	return fields, policy, ""
}

// newJobID is an id shaped like RunPod's: a UUID and a region suffix.
func newJobID(sync bool) string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b)
	id := h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:] + "-u1"
	if sync {
		id = "sync-" + id
	}
	return id
}

// awaitEnd waits, as /runsync does, until the job ends, the wait
// (?wait=ms, 1 s to 5 min, default 90 s) passes or the client goes.
func (e *Endpoint) awaitEnd(r *http.Request, id string) {
	wait := 90 * time.Second
	if ms, err := strconv.Atoi(r.URL.Query().Get("wait")); err == nil {
		wait = time.Duration(min(max(ms, 1000), 300_000)) * time.Millisecond
	}
	deadline := time.Now().Add(wait)
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	for j := e.jobs[id]; j != nil && !j.Status.Terminal() && time.Now().Before(deadline) && r.Context().Err() == nil; j = e.jobs[id] {
		e.p.waitUntil(r.Context(), deadline)
	}
}

func (e *Endpoint) status(w http.ResponseWriter, r *http.Request) {
	e.answer(w, r.PathValue("id"))
}

// answer writes the job's status, or 404.
func (e *Endpoint) answer(w http.ResponseWriter, id string) {
	e.p.mu.Lock()
	j := e.jobs[id]
	var body jobapi.Job
	if j != nil {
		body = j.view()
	}
	e.p.mu.Unlock()
	if j == nil {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, jobapi.ErrorAnswer{Error: "request does not exist"})
}

// view is the job as /status shows it; p.mu is held.
func (j *endpointJob) view() jobapi.Job {
	v := jobapi.Job{ID: j.ID, Status: j.Status, WorkerID: j.WorkerID, Output: j.Output, Error: j.Error}
	if !j.Started.IsZero() {
		v.DelayTime = millis(j.Started.Sub(j.Submitted))
		if !j.Finished.IsZero() {
			v.ExecutionTime = millis(j.Finished.Sub(j.Started))
		}
	}
	return v
}

func millis(d time.Duration) *int64 {
	n := d.Milliseconds()
	return &n
}

func (e *Endpoint) streamed(w http.ResponseWriter, r *http.Request) {
	e.p.mu.Lock()
	j := e.jobs[r.PathValue("id")]
	var body jobapi.StreamAnswer
	if j != nil {
		body = jobapi.StreamAnswer{ID: j.ID, Status: j.Status, Stream: []jobapi.StreamChunk{}}
		for _, c := range j.stream {
			body.Stream = append(body.Stream, jobapi.StreamChunk{Output: c})
		}
		j.stream = nil
	}
	e.p.mu.Unlock()
	if j == nil {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (e *Endpoint) cancel(w http.ResponseWriter, r *http.Request) {
	e.p.mu.Lock()
	j := e.jobs[r.PathValue("id")]
	var body jobapi.Job
	if j != nil {
		e.cancelJob(j)
		body = jobapi.Job{ID: j.ID, Status: j.Status}
	}
	e.p.mu.Unlock()
	if j == nil {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// retry queues a FAILED or TIMED_OUT job again, same id and input.
func (e *Endpoint) retry(w http.ResponseWriter, r *http.Request) {
	e.p.mu.Lock()
	j := e.jobs[r.PathValue("id")]
	ok := j != nil && (j.Status == jobapi.Failed || j.Status == jobapi.TimedOut)
	if ok {
		e.requeue(j)
	}
	e.p.mu.Unlock()
	switch {
	case j == nil:
		notFound(w)
	case !ok:
		badRequest(w, "only a FAILED or TIMED_OUT job can be retried")
	default:
		writeJSON(w, http.StatusOK, jobapi.Job{ID: j.ID, Status: jobapi.InQueue})
	}
}

func (e *Endpoint) healthAnswer(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, e.Health())
}

func (e *Endpoint) purge(w http.ResponseWriter, r *http.Request) {
	e.p.mu.Lock()
	n := 0
	for _, j := range e.jobs {
		if j.Status == jobapi.InQueue {
			e.cancelJob(j)
			n++
		}
	}
	e.p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"removed": n, "status": "completed"})
}

// --- state; every method below runs with p.mu held ---

func (e *Endpoint) live() int {
	n := 0
	for _, j := range e.jobs {
		if !j.Status.Terminal() {
			n++
		}
	}
	return n
}

func (e *Endpoint) add(id string, input json.RawMessage, policy *jobapi.Policy, body string, sync bool) {
	j := &endpointJob{EndpointJob: EndpointJob{ID: id, Status: jobapi.InQueue, Input: input, Policy: policy, Sync: sync, Submitted: time.Now()}, body: body}
	e.jobs[id] = j
	e.all = append(e.all, j)
	e.p.queues[e.id] = append(e.p.queues[e.id], queued{id, body})
	ttl := defaultTTL
	if policy != nil && policy.TTL > 0 {
		ttl = time.Duration(policy.TTL) * time.Millisecond
	}
	e.after(j, ttl, func() { e.expire(j) })
	e.maxLive = max(e.maxLive, e.live())
	e.p.cond.Broadcast()
}

// requeue puts an ended job back in the queue, as new but for its id, its
// ttl (still running from the first submission) and the retried count.
func (e *Endpoint) requeue(j *endpointJob) {
	j.Status, j.WorkerID, j.Output, j.Error = jobapi.InQueue, "", nil, ""
	j.Started, j.Finished, j.Retried = time.Time{}, time.Time{}, j.Retried+1
	for _, t := range j.timers[1:] { // the first is the ttl's
		t.Stop()
	}
	j.timers = j.timers[:1]
	e.p.queues[e.id] = append(e.p.queues[e.id], queued{j.ID, j.body})
	e.maxLive = max(e.maxLive, e.live())
	e.p.cond.Broadcast()
}

// after runs f with p.mu held, d from now.
func (e *Endpoint) after(j *endpointJob, d time.Duration, f func()) {
	j.timers = append(j.timers, time.AfterFunc(d, func() {
		e.p.mu.Lock()
		defer e.p.mu.Unlock()
		f()
		e.p.cond.Broadcast()
	}))
}

// taken: a worker took the job.
func (e *Endpoint) taken(id, pod string) {
	j := e.jobs[id]
	if j == nil || j.Status != jobapi.InQueue {
		return
	}
	j.Status, j.WorkerID, j.Started = jobapi.InProgress, pod, time.Now()
	exec := e.ExecutionTimeout
	if j.Policy != nil && j.Policy.ExecutionTimeout > 0 {
		exec = time.Duration(j.Policy.ExecutionTimeout) * time.Millisecond
	}
	if exec > 0 {
		e.after(j, exec, func() {
			if j.Status == jobapi.InProgress {
				e.p.stopJob(j.WorkerID, j.ID)
				e.end(j, jobapi.TimedOut)
			}
		})
	}
}

// posted: the job's worker posted to job-done or job-stream. A final
// result's error must be a string to fail the job: an object-valued one
// leaves it COMPLETED without output, as on RunPod.
func (e *Endpoint) posted(pod string, post Post, stream bool) {
	j := e.jobs[post.JobID]
	if j == nil || j.Status != jobapi.InProgress || j.WorkerID != pod {
		return
	}
	switch {
	case stream:
		if list, ok := post.Body["output"].([]any); ok {
			j.stream = append(j.stream, list...)
		} else {
			j.stream = append(j.stream, post.Body["output"])
		}
	case post.Body["status"] == string(jobapi.InProgress):
		j.Output = post.Body["output"]
	default:
		if msg, ok := post.Body["error"].(string); ok && msg != "" {
			j.Error = msg
			e.end(j, jobapi.Failed)
			return
		}
		if _, isErr := post.Body["error"]; !isErr {
			j.Output = post.Body["output"]
		}
		e.end(j, jobapi.Completed)
	}
}

// cancelJob cancels a queued or running job; an ended one stays as it is.
func (e *Endpoint) cancelJob(j *endpointJob) {
	switch j.Status {
	case jobapi.InQueue:
		e.unqueue(j.ID)
	case jobapi.InProgress:
		e.p.stopJob(j.WorkerID, j.ID)
	default:
		return
	}
	e.end(j, jobapi.Cancelled)
}

// end gives the job its final status and starts its result retention.
func (e *Endpoint) end(j *endpointJob, s jobapi.Status) {
	j.Status, j.Finished = s, time.Now()
	keep := e.Retention
	if j.Sync {
		keep = e.SyncRetention
	}
	e.after(j, keep, func() { e.expire(j) })
}

// expire forgets the job: ttl or retention elapsed. A job still queued
// leaves the queue; one still running is stopped on its worker.
func (e *Endpoint) expire(j *endpointJob) {
	if j.Expired {
		return
	}
	switch j.Status {
	case jobapi.InQueue:
		e.unqueue(j.ID)
		j.Status, j.Finished = jobapi.TimedOut, time.Now()
	case jobapi.InProgress:
		e.p.stopJob(j.WorkerID, j.ID)
		j.Status, j.Finished = jobapi.TimedOut, time.Now()
	}
	j.Expired = true
	delete(e.jobs, j.ID)
	for _, t := range j.timers {
		t.Stop()
	}
}

func (e *Endpoint) unqueue(id string) {
	e.p.queues[e.id] = slices.DeleteFunc(e.p.queues[e.id], func(q queued) bool { return q.id == id })
}

func (e *Endpoint) health() Health {
	var h Health
	for _, j := range e.all {
		h.Jobs.Retried += j.Retried
		h.Jobs.Count(j.Status)
	}
	if e.workers != nil {
		h.Workers = *e.workers
		return h
	}
	busy := map[string]bool{}
	for _, j := range e.jobs {
		if j.Status == jobapi.InProgress {
			busy[j.WorkerID] = true
		}
	}
	for k, at := range e.p.seen {
		if k.endpoint != e.id || time.Since(at) > e.p.WorkerSeen {
			continue
		}
		if busy[k.pod] {
			h.Workers.Running++
		} else {
			h.Workers.Idle++
		}
	}
	return h
}
