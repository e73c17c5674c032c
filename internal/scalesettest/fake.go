// Package scalesettest is an HTTP-level fake of GitHub's runner scale-set
// service, faithful to the wire format github.com/actions/scaleset v0.4.0
// speaks: the GitHub API side (registration token for a PAT or a GitHub
// App installation, then POST /actions/runner-registration, which hands
// out the Actions service URL and an admin token, a JWT that expires) at
// /api/v3/ as GitHub Enterprise Server serves it, and the Actions service
// side (runner groups, scale-set CRUD, message sessions that conflict with
// 409 TaskAgentSessionConflictException, the message long poll with
// X-ScaleSetMaxCapacity and statistics, message acknowledgement,
// acquirejobs, generatejitconfig, runner get/remove), and the REST API's
// runner list and removal (GET and DELETE /{repos/o/r|orgs/o|enterprises/e}
// /actions/runners[/id], paged, labels as objects; rest.go).
//
// Jobs are queued with labels (QueueJob); a scale set whose labels hold
// every label of a job is offered it (JobAvailable), acquires it
// (acquirejobs: JobAssigned), and one of its runners takes it. A runner
// started with a JIT config this fake minted is the fake runner of
// internal/listener/fakerunner: its .runner carries fakeApi, this fake's
// URL, and it posts /_fake/runners/{id}/online, then /job (204: a job was
// assigned to it, JobStarted; 202: none yet, ask again), then /done with
// {"result": "Succeeded|Failed|Canceled"} (JobCompleted; the ephemeral
// runner is removed, as GitHub does).
//
// Test controls: Reoffer (an assigned job is canceled and offered again,
// as GitHub does when no runner picks it up in time), LoseRunner (a runner
// vanished mid-job: its job fails), Fail (5xx and 429 answers for an
// operation), Count, Jobs, Runners, Sessions, Capacities.
package scalesettest

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// Op names an operation of the service, for Fail and Count.
type Op string

// The operations.
const (
	OpAccessToken        Op = "access-token"        // POST /app/installations/{id}/access_tokens
	OpRegistrationToken  Op = "registration-token"  // POST /{scope}/actions/runners/registration-token
	OpRunnerRegistration Op = "runner-registration" // POST /actions/runner-registration
	OpRunnerGroups       Op = "runner-groups"
	OpScaleSetGet        Op = "scale-set-get"
	OpScaleSetCreate     Op = "scale-set-create"
	OpScaleSetUpdate     Op = "scale-set-update"
	OpScaleSetDelete     Op = "scale-set-delete"
	OpSessionCreate      Op = "session-create"
	OpSessionDelete      Op = "session-delete"
	OpSessionRefresh     Op = "session-refresh"
	OpGetMessage         Op = "get-message"
	OpDeleteMessage      Op = "delete-message"
	OpAcquireJobs        Op = "acquire-jobs"
	OpGenerateJIT        Op = "generate-jit"
	OpRunnerGet          Op = "runner-get"
	OpRunnerRemove       Op = "runner-remove"
)

// JobState is where a job stands.
type JobState string

// The states of a job.
const (
	JobQueued    JobState = "queued"    // no scale set matches its labels yet
	JobAvailable JobState = "available" // offered to a scale set
	JobAssigned  JobState = "assigned"  // acquired by the scale set, waiting for a runner
	JobRunning   JobState = "running"   // a runner took it
	JobDone      JobState = "done"
)

// Job is a workflow job.
type Job struct {
	RequestID  int64
	JobID      string
	Labels     []string
	State      JobState
	ScaleSetID int
	RunnerID   int
	RunnerName string
	Result     string // succeeded, failed, canceled (when done)
	// Runs counts how often a runner took it; Offers how often it was
	// offered to a scale set.
	Runs, Offers int
}

// Runner is a runner registered through generatejitconfig.
type Runner struct {
	ID         int
	Name       string
	ScaleSetID int
	Online     bool
	Job        int64 // the request id of its job, 0 when idle
}

// ScaleSet is a runner scale set as stored.
type ScaleSet struct {
	ID            int
	Name          string
	RunnerGroupID int
	Labels        []string
}

// Fake is the service. Create it with New.
type Fake struct {
	*httptest.Server
	// PAT is the accepted personal access token.
	PAT string
	// LongPoll is how long an empty message poll waits before its 202
	// (GitHub: about 50 s; default 50 s).
	LongPoll time.Duration
	// SessionTimeout drops a session that has not polled for that long
	// (a scaler killed without closing its session); default 2 minutes.
	SessionTimeout time.Duration
	// AdminTokenTTL is the life of the admin token runner-registration
	// hands out (default one hour); requests with an expired one get 401.
	AdminTokenTTL time.Duration

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every change
	closing    chan struct{}
	apps       map[string]app
	groups     map[string]int
	sets       map[int]*ScaleSet
	sessions   map[int]*session
	jobs       map[int64]*Job
	runners    map[int]*Runner
	queues     map[int]*queue
	faults     map[Op][]int
	counts     map[Op]int
	capacities map[int][]int
	tokens     map[string]time.Time // installation and registration tokens
	issued     []string             // secrets handed out
	nextID     int
}

type app struct {
	installation int64
	key          *rsa.PublicKey
}

// New starts a fake that accepts pat.
func New(pat string) *Fake {
	f := &Fake{
		PAT: pat, LongPoll: 50 * time.Second, SessionTimeout: 2 * time.Minute, AdminTokenTTL: time.Hour,
		changed: make(chan struct{}), closing: make(chan struct{}),
		apps: map[string]app{}, groups: map[string]int{"default": 1}, sets: map[int]*ScaleSet{},
		sessions: map[int]*session{}, jobs: map[int64]*Job{}, runners: map[int]*Runner{}, queues: map[int]*queue{},
		faults: map[Op][]int{}, counts: map[Op]int{}, capacities: map[int][]int{}, tokens: map[string]time.Time{},
		nextID: 100,
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	return f
}

// Close wakes every long poll, then stops the server.
func (f *Fake) Close() {
	f.mu.Lock()
	select {
	case <-f.closing:
	default:
		close(f.closing)
	}
	f.mu.Unlock()
	f.Server.Close()
}

// ConfigURL is the GitHub config URL of a scope ("org", "owner/repo",
// "enterprises/slug") on this fake, as GitHub Enterprise Server.
func (f *Fake) ConfigURL(scope string) string { return f.URL + "/" + scope }

// AddApp accepts a GitHub App: JWTs signed by key with issuer clientID
// get installation tokens for installation.
func (f *Fake) AddApp(clientID string, installation int64, key *rsa.PublicKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.apps[clientID] = app{installation, key}
}

// AddRunnerGroup adds a runner group and returns its id.
func (f *Fake) AddRunnerGroup(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.groups[name] = f.nextID
	return f.nextID
}

// Fail makes the next requests of op answer these statuses, one each (a
// 429 with Retry-After: 0). A negative status -N (for the Actions
// service's admin calls: scale sets, generatejitconfig, runners) does the
// request, then answers N instead: the answer is lost.
func (f *Fake) Fail(op Op, statuses ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = append(f.faults[op], statuses...)
}

// Count is how many requests of op arrived (failed ones included).
func (f *Fake) Count(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

// Issued lists the secrets the fake handed out: tokens, admin tokens,
// session tokens, JIT configs.
func (f *Fake) Issued() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.issued)
}

// QueueJob queues a workflow job with runs-on labels and returns its
// runner request id.
func (f *Fake) QueueJob(labels ...string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	j := &Job{RequestID: int64(f.nextID), JobID: fmt.Sprintf("job-%d", f.nextID), Labels: labels, State: JobQueued}
	f.jobs[j.RequestID] = j
	f.offerQueued()
	f.notify()
	return j.RequestID
}

// Reoffer does what GitHub does to an assigned job no runner picked up in
// time: JobCompleted with result canceled, then the job is offered again.
func (f *Fake) Reoffer(requestID int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[requestID]
	if j == nil || j.State != JobAssigned {
		return fmt.Errorf("job %d is not assigned and waiting for a runner", requestID)
	}
	f.event(j.ScaleSetID, f.jobMessage("JobCompleted", j, map[string]any{"result": "canceled"}))
	j.State = JobQueued
	f.offerQueued()
	f.notify()
	return nil
}

// CancelJob is a workflow run cancelled before a runner took its job:
// JobCompleted with result canceled, and the job is done.
func (f *Fake) CancelJob(requestID int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[requestID]
	if j == nil || j.State == JobRunning || j.State == JobDone {
		return fmt.Errorf("job %d is not waiting for a runner", requestID)
	}
	if j.ScaleSetID != 0 {
		f.event(j.ScaleSetID, f.jobMessage("JobCompleted", j, map[string]any{"result": "canceled"}))
	}
	j.State, j.Result = JobDone, "canceled"
	f.notify()
	return nil
}

// LoseRunner is a runner that vanished (its machine died): its job, if
// any, completes as failed, and the runner is removed, as GitHub does
// once the runner stops answering.
func (f *Fake) LoseRunner(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.runners[id]; r != nil {
		f.finish(r, "failed")
	}
}

// Jobs returns the jobs, oldest first.
func (f *Fake) Jobs() []Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Job
	for _, j := range f.jobs {
		out = append(out, *j)
	}
	slices.SortFunc(out, func(a, b Job) int { return int(a.RequestID - b.RequestID) })
	return out
}

// Runners returns the registered runners, oldest first.
func (f *Fake) Runners() []Runner {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Runner
	for _, r := range f.runners {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Runner) int { return a.ID - b.ID })
	return out
}

// ScaleSets returns the scale sets.
func (f *Fake) ScaleSets() []ScaleSet {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ScaleSet
	for _, s := range f.sets {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ScaleSet) int { return a.ID - b.ID })
	return out
}

// Sessions returns the owners of the live sessions by scale-set id.
func (f *Fake) Sessions() map[int]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expireSessions()
	out := map[int]string{}
	for id, s := range f.sessions {
		out[id] = s.owner
	}
	return out
}

// Capacities returns the X-ScaleSetMaxCapacity values the polls of a
// scale set sent, in order.
func (f *Fake) Capacities(scaleSetID int) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.capacities[scaleSetID])
}

// notify wakes the long polls. Call with f.mu held.
func (f *Fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// fault returns the injected status for op, 0 for none, and counts the
// request. Call with f.mu held.
func (f *Fake) fault(op Op) int {
	f.counts[op]++
	q := f.faults[op]
	if len(q) == 0 {
		return 0
	}
	f.faults[op] = q[1:]
	return q[0]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// exception answers as the Actions service does: a typeName the client
// maps to its errors (AgentNotFoundException, ...) and a message.
func exception(w http.ResponseWriter, status int, typeName, msg string) {
	w.Header().Set("ActivityId", "fake-activity")
	writeJSON(w, status, map[string]string{"typeName": typeName, "message": msg})
}

// injected answers an injected fault.
func injected(w http.ResponseWriter, status int) {
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "0")
	}
	exception(w, status, "FakeInjectedFault", fmt.Sprintf("injected HTTP %d", status))
}

// labelsMatch reports whether the scale set's labels hold every label of
// the job (case-insensitively), as GitHub matches runs-on.
func labelsMatch(set, job []string) bool {
	for _, l := range job {
		if !slices.ContainsFunc(set, func(s string) bool { return strings.EqualFold(s, l) }) {
			return false
		}
	}
	return len(job) > 0
}
