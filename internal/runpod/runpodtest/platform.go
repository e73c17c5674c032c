// Package runpodtest is a fake RunPod serverless platform for tests: the
// worker side (the job-take long poll, single and batch, job-done,
// job-stream, ping and job-stop endpoints) with the URL shapes, query
// strings and headers the real platform uses (see shared/RUNPOD.md), the
// client side of its endpoints (/run, /status, /cancel, /health...: see
// Endpoint) bridged to the worker side, and fault injection on both.
package runpodtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// Response is a scripted answer to a take request.
type Response struct {
	Status int
	Body   string
}

// Post is a request the worker sent to job-done or job-stream.
type Post struct {
	JobID   string
	Query   string
	Header  http.Header
	Body    map[string]any
	RawBody string
	At      time.Time
}

// Ping is one heartbeat, or a report that the worker is unhealthy (Status
// "unhealthy", with the failed Check and its Reason, as runpod-python sends
// before it exits on a failed fitness check).
type Ping struct {
	JobIDs  string // the job_id parameter, "" when absent
	Version string
	Status  string
	Check   string
	Reason  string
	At      time.Time
}

// Platform is the fake. Its zero value is not usable: call New or
// NewInProcess.
type Platform struct {
	*httptest.Server // nil for NewInProcess
	APIKey           string
	// LongPoll is how long an empty take or stop request waits (default 200 ms).
	LongPoll time.Duration
	// StreamDelay is how long each job-stream post takes to answer: a slow
	// platform.
	StreamDelay time.Duration
	// IDPlaceholder makes Env write the take and ping URLs with $ID, as
	// some RunPod versions do, instead of $RUNPOD_POD_ID.
	IDPlaceholder bool

	base    string
	handler http.Handler

	// WorkerSeen is how recently a worker must have taken, pinged or
	// polled job-stop to count in an endpoint's /health (default 5 s).
	WorkerSeen time.Duration

	mu          sync.Mutex
	cond        *sync.Cond
	queues      map[string][]queued // per endpoint id; AddJob's is DefaultEndpoint
	endpoints   map[string]*Endpoint
	seen        map[workerKey]time.Time
	script      []Response
	doneStatus  []int
	stop        []string
	stopFor     map[string][]string // per pod: cancelled or timed out jobs
	stopScript  []Response
	stopPolls   []time.Time
	pods        map[string]bool // set by Env: requests for another pod get 404
	killAt      time.Time       // set by Terminate: requests after it are lost
	lost        int
	takes       []time.Time
	takeQueries []string
	done        []Post
	streams     []Post
	pings       []Ping
	unauth      int
	// RequestLog records every request's method and URL, to check that no
	// secret went where it should not. Read it with Requests while
	// requests may be in flight.
	RequestLog []string
}

// DefaultEndpoint is the endpoint id of Env's URLs and AddJob's queue.
const DefaultEndpoint = "ep"

// queued is a job waiting for a take: its id ("" if unknown) and body.
type queued struct{ id, body string }

type workerKey struct{ endpoint, pod string }

// workerOps are the worker side's operations; any other path is the
// endpoint API's.
var workerOps = map[string]bool{"job-take": true, "job-take-batch": true, "job-done": true, "job-stream": true, "ping": true, "job-stop": true}

// New starts a fake platform on a loopback port.
func New() *Platform {
	p := newPlatform()
	p.Server = httptest.NewServer(p.handler)
	p.base = p.Server.URL
	return p
}

// NewInProcess makes a fake platform that listens nowhere: its Client calls
// the handlers in the caller's process, so a worker and the platform can
// run together in a testing/synctest bubble.
func NewInProcess() *Platform {
	p := newPlatform()
	p.base = "http://runpod.invalid"
	return p
}

// Close stops the listener, if there is one.
func (p *Platform) Close() {
	if p.Server != nil {
		p.Server.Close()
	}
}

// Client is an HTTP client that reaches this platform: in process for
// NewInProcess, over loopback for New.
func (p *Platform) Client() *http.Client {
	if p.Server != nil {
		return p.Server.Client()
	}
	return &http.Client{Transport: inProcess{p.handler}}
}

// inProcess serves requests by calling the handler in a goroutine of the
// caller's, so the request's context can end the wait.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{}) // as a transport would once the request is out
	}
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.h.ServeHTTP(rec, req)
	}()
	<-done // the handlers end their waits when the request's context ends
	switch rec.Code {
	case statusClientGone:
		if err := req.Context().Err(); err != nil {
			return nil, err
		}
		return nil, errConnectionLost
	case statusDropped:
		return nil, errConnectionLost
	}
	return rec.Result(), nil
}

// statusClientGone is what a handler answers when the request's context
// ended before it took the request (nginx's 499).
const statusClientGone = 499

// statusDropped is what a handler answers, in process, for a connection
// closed without an answer (see dropConnection).
const statusDropped = 598

var errConnectionLost = fmt.Errorf("runpodtest: the connection closed before an answer: %w", io.ErrUnexpectedEOF)

// dropConnection closes the connection without an answer: the request was
// received, its answer is lost.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	w.WriteHeader(statusDropped)
}

func newPlatform() *Platform {
	p := &Platform{APIKey: "rpa_TESTKEY_0123456789abcdef", LongPoll: 200 * time.Millisecond, WorkerSeen: 5 * time.Second,
		queues: map[string][]queued{}, endpoints: map[string]*Endpoint{}, seen: map[workerKey]time.Time{},
		stopFor: map[string][]string{}, pods: map[string]bool{}}
	p.cond = sync.NewCond(&p.mu)
	worker := http.NewServeMux()
	worker.HandleFunc("GET /v2/{ep}/job-take/{pod}", p.take)
	worker.HandleFunc("GET /v2/{ep}/job-take-batch/{pod}", p.take)
	worker.HandleFunc("POST /v2/{ep}/job-done/{pod}/{job}", func(w http.ResponseWriter, r *http.Request) { p.post(w, r, false) })
	worker.HandleFunc("POST /v2/{ep}/job-stream/{pod}/{job}", func(w http.ResponseWriter, r *http.Request) { p.post(w, r, true) })
	worker.HandleFunc("GET /v2/{ep}/ping/{pod}", p.ping)
	worker.HandleFunc("GET /v2/{ep}/job-stop/{pod}", p.jobStop)
	api := p.apiMux()
	workerSide := p.auth(worker)
	p.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.RequestLog = append(p.RequestLog, r.Method+" "+r.URL.String())
		p.mu.Unlock()
		if parts := strings.Split(r.URL.Path, "/"); len(parts) > 3 && workerOps[parts[3]] {
			workerSide.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
	return p
}

// Env is the worker environment for this platform, as RunPod sets it: a
// worker of DefaultEndpoint.
func (p *Platform) Env(podID string) map[string]string {
	return p.env(DefaultEndpoint, podID)
}

func (p *Platform) env(endpoint, podID string) map[string]string {
	q := "?gpu=NVIDIA+RTX+A5000"
	p.mu.Lock()
	p.pods[podID] = true
	p.mu.Unlock()
	take := "$RUNPOD_POD_ID"
	if p.IDPlaceholder {
		take = "$ID"
	}
	base := p.base + "/v2/" + endpoint
	return map[string]string{
		"RUNPOD_WEBHOOK_GET_JOB":     base + "/job-take/" + take + q,
		"RUNPOD_WEBHOOK_POST_OUTPUT": base + "/job-done/$RUNPOD_POD_ID/$ID" + q,
		"RUNPOD_WEBHOOK_POST_STREAM": base + "/job-stream/$RUNPOD_POD_ID/$ID" + q,
		"RUNPOD_WEBHOOK_PING":        base + "/ping/" + take + q,
		"RUNPOD_AI_API_KEY":          p.APIKey,
		"RUNPOD_POD_ID":              podID,
		"RUNPOD_POD_HOSTNAME":        podID + "-host",
		"RUNPOD_PING_INTERVAL":       "1000",
	}
}

func (p *Platform) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		killed := !p.killAt.IsZero() && !time.Now().Before(p.killAt)
		if killed {
			p.lost++
		}
		// /v2/<endpoint>/<op>/<pod>[/<job>]: a worker id left as a
		// placeholder, or one Env never gave out, is no worker; an
		// endpoint that does not exist has none.
		parts := strings.Split(r.URL.Path, "/")
		unknownPod := len(p.pods) > 0 && (len(parts) < 5 || !p.pods[parts[4]])
		unknownEndpoint := len(parts) < 3 || parts[2] != DefaultEndpoint && p.endpoints[parts[2]] == nil
		p.mu.Unlock()
		if killed {
			w.WriteHeader(statusClientGone) // the container is gone: nothing arrives
			return
		}
		if unknownPod || unknownEndpoint {
			http.Error(w, "no such worker", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != p.APIKey {
			p.mu.Lock()
			p.unauth++
			p.mu.Unlock()
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if !strings.Contains(r.URL.RawQuery, "gpu=NVIDIA") {
			http.Error(w, "lost the platform's query string", http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// AddJob queues a job with that id and input (any JSON-encodable value).
func (p *Platform) AddJob(id string, input any) {
	b, err := json.Marshal(map[string]any{"id": id, "input": input, "extra_field": "kept"})
	if err != nil {
		panic(err)
	}
	p.AddRaw(string(b))
}

// AddRaw queues a raw take body.
func (p *Platform) AddRaw(body string) {
	var job struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(body), &job) // best effort: the id is for the books only
	p.mu.Lock()
	p.queues[DefaultEndpoint] = append(p.queues[DefaultEndpoint], queued{job.ID, body})
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Script makes the next take requests answer with these responses first.
func (p *Platform) Script(rs ...Response) {
	p.mu.Lock()
	p.script = append(p.script, rs...)
	p.cond.Broadcast()
	p.mu.Unlock()
}

// FailDone makes the next job-done posts answer with these statuses.
func (p *Platform) FailDone(statuses ...int) {
	p.mu.Lock()
	p.doneStatus = append(p.doneStatus, statuses...)
	p.mu.Unlock()
}

// ScriptStop makes the next job-stop polls answer with these responses
// first (204, 429, a non-JSON body...).
func (p *Platform) ScriptStop(rs ...Response) {
	p.mu.Lock()
	p.stopScript = append(p.stopScript, rs...)
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Terminate is the platform's SIGTERM: it calls sigterm (what the
// signal does to the worker) and, grace later, kills the container:
// every request from then on is lost (counted by Lost), as a SIGKILL
// loses it.
func (p *Platform) Terminate(sigterm func(), grace time.Duration) {
	p.mu.Lock()
	p.killAt = time.Now().Add(grace)
	p.mu.Unlock()
	sigterm()
}

// Lost counts requests that came after Terminate's grace.
func (p *Platform) Lost() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// StopPolls counts job-stop polls so far.
func (p *Platform) StopPolls() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time{}, p.stopPolls...)
}

// Stop makes the next job-stop poll name these jobs.
func (p *Platform) Stop(ids ...string) {
	p.mu.Lock()
	p.stop = append(p.stop, ids...)
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *Platform) take(w http.ResponseWriter, r *http.Request) {
	ep, pod := r.PathValue("ep"), r.PathValue("pod")
	p.mu.Lock()
	p.sawWorker(ep, pod)
	p.takes = append(p.takes, time.Now())
	p.takeQueries = append(p.takeQueries, r.URL.RawQuery)
	deadline := time.Now().Add(p.LongPoll)
	for len(p.script) == 0 && len(p.queues[ep]) == 0 && time.Now().Before(deadline) && r.Context().Err() == nil {
		p.waitUntil(r.Context(), deadline)
	}
	if r.Context().Err() != nil {
		p.mu.Unlock()
		w.WriteHeader(statusClientGone) // the worker gave up: nothing is taken
		return
	}
	if len(p.script) > 0 {
		s := p.script[0]
		p.script = p.script[1:]
		p.mu.Unlock()
		w.WriteHeader(s.Status)
		io.WriteString(w, s.Body)
		return
	}
	if q := p.queues[ep]; len(q) > 0 {
		p.queues[ep] = q[1:]
		if e := p.endpoints[ep]; e != nil {
			e.taken(q[0].id, pod)
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, q[0].body)
		return
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// waitUntil waits on the condition variable, woken at the deadline or
// when ctx ends.
func (p *Platform) waitUntil(ctx context.Context, deadline time.Time) {
	wake := func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	t := time.AfterFunc(time.Until(deadline), wake)
	stop := context.AfterFunc(ctx, wake)
	p.cond.Wait()
	t.Stop()
	stop()
}

func (p *Platform) post(w http.ResponseWriter, r *http.Request, stream bool) {
	raw, _ := io.ReadAll(r.Body)
	if stream && p.StreamDelay > 0 {
		select {
		case <-time.After(p.StreamDelay):
		case <-r.Context().Done():
			w.WriteHeader(statusClientGone) // nothing was taken
			return
		}
	}
	var body map[string]any
	json.Unmarshal(raw, &body)
	post := Post{JobID: r.PathValue("job"), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, RawBody: string(raw), At: time.Now()}
	p.mu.Lock()
	status := http.StatusOK
	if !stream && len(p.doneStatus) > 0 {
		status = p.doneStatus[0]
		p.doneStatus = p.doneStatus[1:]
	}
	if status < 300 {
		if stream {
			p.streams = append(p.streams, post)
		} else {
			p.done = append(p.done, post)
		}
		if e := p.endpoints[r.PathValue("ep")]; e != nil {
			e.posted(r.PathValue("pod"), post, stream)
		}
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	w.WriteHeader(status)
}

func (p *Platform) ping(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.sawWorker(r.PathValue("ep"), r.PathValue("pod"))
	q := r.URL.Query()
	p.pings = append(p.pings, Ping{JobIDs: q.Get("job_id"), Version: q.Get("runpod_version"),
		Status: q.Get("status"), Check: q.Get("check"), Reason: q.Get("reason"), At: time.Now()})
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (p *Platform) jobStop(w http.ResponseWriter, r *http.Request) {
	pod := r.PathValue("pod")
	p.mu.Lock()
	p.sawWorker(r.PathValue("ep"), pod)
	p.stopPolls = append(p.stopPolls, time.Now())
	if len(p.stopScript) > 0 {
		s := p.stopScript[0]
		p.stopScript = p.stopScript[1:]
		p.mu.Unlock()
		w.WriteHeader(s.Status)
		io.WriteString(w, s.Body)
		return
	}
	deadline := time.Now().Add(p.LongPoll)
	for len(p.stop) == 0 && len(p.stopFor[pod]) == 0 && time.Now().Before(deadline) && r.Context().Err() == nil {
		p.waitUntil(r.Context(), deadline)
	}
	if r.Context().Err() != nil {
		p.mu.Unlock()
		w.WriteHeader(statusClientGone) // the worker gave up: the ids stay for its next poll
		return
	}
	ids := append(p.stop, p.stopFor[pod]...)
	p.stop = nil
	delete(p.stopFor, pod)
	p.mu.Unlock()
	if ids == nil {
		ids = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"jobsToStop": ids})
}

// WaitFinal waits for the final (non-IN_PROGRESS) post of a job.
func (p *Platform) WaitFinal(jobID string, timeout time.Duration) (Post, error) {
	deadline := time.Now().Add(timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for _, d := range p.done {
			if d.JobID == jobID && d.Body["status"] != string(jobapi.InProgress) {
				return d, nil
			}
		}
		if !time.Now().Before(deadline) {
			return Post{}, fmt.Errorf("no result for job %s within %v", jobID, timeout)
		}
		p.waitUntil(context.Background(), deadline)
	}
}

// Done returns every job-done post so far.
func (p *Platform) Done() []Post {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Post{}, p.done...)
}

// Streams returns every stream post so far.
func (p *Platform) Streams() []Post {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Post{}, p.streams...)
}

// StreamItems returns every streamed chunk so far, in order: the items of
// each post's "output" list (the worker batches chunks into lists), or the
// output itself when a post carries a single chunk.
func (p *Platform) StreamItems() []any {
	var items []any
	for _, s := range p.Streams() {
		if list, ok := s.Body["output"].([]any); ok {
			items = append(items, list...)
		} else {
			items = append(items, s.Body["output"])
		}
	}
	return items
}

// Pings returns every ping so far.
func (p *Platform) Pings() []Ping {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Ping{}, p.pings...)
}

// Takes returns when each take request arrived, and its query.
func (p *Platform) Takes() ([]time.Time, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time{}, p.takes...), append([]string{}, p.takeQueries...)
}

// Requests returns RequestLog so far (method and URL of every request),
// read under the platform's lock: safe while requests are in flight.
func (p *Platform) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string{}, p.RequestLog...)
}

// Unauthorized counts requests without the right API key.
func (p *Platform) Unauthorized() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unauth
}

// sawWorker notes that a worker of that endpoint is alive; p.mu is held.
func (p *Platform) sawWorker(endpoint, pod string) {
	p.seen[workerKey{endpoint, pod}] = time.Now()
}

// stopJob has the next job-stop poll of that worker name the job; p.mu is
// held.
func (p *Platform) stopJob(pod, id string) {
	p.stopFor[pod] = append(p.stopFor[pod], id)
	p.cond.Broadcast()
}
