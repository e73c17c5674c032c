// Package runpodtest is a fake RunPod serverless platform for tests: the
// job-take long poll (single and batch), job-done, job-stream, ping and
// job-stop endpoints, with the URL shapes, query strings and headers the
// real platform uses (see shared/RUNPOD.md), plus fault injection.
package runpodtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
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

// Ping is one heartbeat.
type Ping struct {
	JobIDs  string // the job_id parameter, "" when absent
	Version string
	At      time.Time
}

// Platform is the fake. Its zero value is not usable: call New.
type Platform struct {
	*httptest.Server
	APIKey string
	// LongPoll is how long an empty take or stop request waits (default 200 ms).
	LongPoll time.Duration

	mu          sync.Mutex
	cond        *sync.Cond
	queue       []string // job JSON objects
	script      []Response
	doneStatus  []int
	stop        []string
	takes       []time.Time
	takeQueries []string
	done        []Post
	streams     []Post
	pings       []Ping
	unauth      int
	// RequestLog records every request line and header, to check that no
	// secret went where it should not.
	RequestLog []string
}

// New starts a fake platform.
func New() *Platform {
	p := &Platform{APIKey: "rpa_TESTKEY_0123456789abcdef", LongPoll: 200 * time.Millisecond}
	p.cond = sync.NewCond(&p.mu)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/ep/job-take/{pod}", p.take)
	mux.HandleFunc("GET /v2/ep/job-take-batch/{pod}", p.take)
	mux.HandleFunc("POST /v2/ep/job-done/{pod}/{job}", func(w http.ResponseWriter, r *http.Request) { p.post(w, r, false) })
	mux.HandleFunc("POST /v2/ep/job-stream/{pod}/{job}", func(w http.ResponseWriter, r *http.Request) { p.post(w, r, true) })
	mux.HandleFunc("GET /v2/ep/ping/{pod}", p.ping)
	mux.HandleFunc("GET /v2/ep/job-stop/{pod}", p.jobStop)
	p.Server = httptest.NewServer(p.auth(mux))
	return p
}

// Env is the worker environment for this platform, as RunPod sets it.
func (p *Platform) Env(podID string) map[string]string {
	q := "?gpu=NVIDIA+RTX+A5000"
	return map[string]string{
		"RUNPOD_WEBHOOK_GET_JOB":     p.URL + "/v2/ep/job-take/$RUNPOD_POD_ID" + q,
		"RUNPOD_WEBHOOK_POST_OUTPUT": p.URL + "/v2/ep/job-done/$RUNPOD_POD_ID/$ID" + q,
		"RUNPOD_WEBHOOK_POST_STREAM": p.URL + "/v2/ep/job-stream/$RUNPOD_POD_ID/$ID" + q,
		"RUNPOD_WEBHOOK_PING":        p.URL + "/v2/ep/ping/$RUNPOD_POD_ID" + q,
		"RUNPOD_AI_API_KEY":          p.APIKey,
		"RUNPOD_POD_ID":              podID,
		"RUNPOD_PING_INTERVAL":       "1000",
	}
}

func (p *Platform) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.RequestLog = append(p.RequestLog, r.Method+" "+r.URL.String())
		p.mu.Unlock()
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
	p.mu.Lock()
	p.queue = append(p.queue, body)
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

// Stop makes the next job-stop poll name these jobs.
func (p *Platform) Stop(ids ...string) {
	p.mu.Lock()
	p.stop = append(p.stop, ids...)
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *Platform) take(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.takes = append(p.takes, time.Now())
	p.takeQueries = append(p.takeQueries, r.URL.RawQuery)
	deadline := time.Now().Add(p.LongPoll)
	for len(p.script) == 0 && len(p.queue) == 0 && time.Now().Before(deadline) && r.Context().Err() == nil {
		p.waitUntil(deadline)
	}
	if len(p.script) > 0 {
		s := p.script[0]
		p.script = p.script[1:]
		p.mu.Unlock()
		w.WriteHeader(s.Status)
		io.WriteString(w, s.Body)
		return
	}
	if len(p.queue) > 0 {
		body := p.queue[0]
		p.queue = p.queue[1:]
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
		return
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// waitUntil waits on the condition variable, woken at the deadline.
func (p *Platform) waitUntil(deadline time.Time) {
	t := time.AfterFunc(time.Until(deadline), func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	p.cond.Wait()
	t.Stop()
}

func (p *Platform) post(w http.ResponseWriter, r *http.Request, stream bool) {
	raw, _ := io.ReadAll(r.Body)
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
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	w.WriteHeader(status)
}

func (p *Platform) ping(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.pings = append(p.pings, Ping{JobIDs: r.URL.Query().Get("job_id"), Version: r.URL.Query().Get("runpod_version"), At: time.Now()})
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (p *Platform) jobStop(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	deadline := time.Now().Add(p.LongPoll)
	for len(p.stop) == 0 && time.Now().Before(deadline) && r.Context().Err() == nil {
		p.waitUntil(deadline)
	}
	ids := p.stop
	p.stop = nil
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
			if d.JobID == jobID && d.Body["status"] != "IN_PROGRESS" {
				return d, nil
			}
		}
		if time.Now().After(deadline) {
			return Post{}, fmt.Errorf("no result for job %s within %v", jobID, timeout)
		}
		p.waitUntil(deadline)
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

// Unauthorized counts requests without the right API key.
func (p *Platform) Unauthorized() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unauth
}
