package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/retry"
)

// Options configure a JobLoop. Zero timings take the platform's defaults;
// tests shrink them.
type Options struct {
	Config  *Config
	Handler Handler
	Logger  *slog.Logger
	Client  *http.Client
	// Refresh asks the platform to replace the container after each job
	// (refresh_worker, "stopPod": true); the loop then takes no more jobs
	// and Run returns.
	Refresh bool
	// Concurrency is how many jobs are held at once (default 1).
	Concurrency int
	// Grace bounds shutdown: the time held jobs get to return and post their
	// results once SIGTERM cancelled them (default DefaultGrace). Plus 30 s,
	// it also bounds posting one result, retries included.
	Grace time.Duration
	// ShutdownFinish is how long held jobs may run on after SIGTERM before
	// they are cancelled (then they get Grace); 0 (default: Config's
	// ShutdownFinish) cancels them at once. Jobs taken but not started are
	// never started after SIGTERM: they are answered "the worker is
	// shutting down".
	ShutdownFinish time.Duration
	// StartupCheck, when set, runs once before the first take, as
	// runpod-python's fitness checks do. If it fails, no job is taken: the
	// loop logs it, tells the platform the worker is unhealthy (a ping with
	// status=unhealthy) and Run returns an error wrapping it, so the
	// process exits non-zero and RunPod replaces the worker. An UnfitError's
	// Detail is logged. SIGTERM during the check is a plain shutdown.
	StartupCheck func(context.Context) error
	// Version goes into the User-Agent.
	Version string

	TakeTimeout    time.Duration   // long poll per take request (90 s)
	RateLimitWait  time.Duration   // after a 429 (5 s)
	BackoffBase    time.Duration   // first wait after a failed take (1 s)
	BackoffMax     time.Duration   // longest wait after failed takes (30 s)
	NoJobWait      time.Duration   // pause when "no job" came back at once (500 ms)
	PostRetryWaits []time.Duration // waits between result post attempts (2 s, 3 s)

	StreamFlush       time.Duration // longest a stream chunk waits to be posted (1 s)
	StreamBatchBytes  int           // most bytes of chunks in one stream post (64 KiB)
	StreamBufferBytes int           // most bytes of chunks waiting; more are dropped and counted (4 MiB)
	StreamDrain       time.Duration // longest the result waits for the stream after the job (10 s)
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Grace, DefaultGrace)
	def(&o.ShutdownFinish, o.Config.ShutdownFinish)
	def(&o.TakeTimeout, 90*time.Second)
	def(&o.RateLimitWait, 5*time.Second)
	def(&o.BackoffBase, time.Second)
	def(&o.BackoffMax, 30*time.Second)
	def(&o.NoJobWait, 500*time.Millisecond)
	def(&o.StreamFlush, time.Second)
	def(&o.StreamDrain, 10*time.Second)
	if o.StreamBatchBytes <= 0 {
		o.StreamBatchBytes = 64 << 10
	}
	if o.StreamBufferBytes <= 0 {
		o.StreamBufferBytes = 4 << 20
	}
	if o.PostRetryWaits == nil {
		o.PostRetryWaits = []time.Duration{2 * time.Second, 3 * time.Second}
	}
	if o.Version == "" {
		o.Version = "dev"
	}
}

// DefaultGrace is Options.Grace's default. A cancelled job stops its
// runner (SIGINT, then up to 45 s, listener.DefaultStopGrace, for the
// runner to cancel its job and tell GitHub, before SIGKILL), removes it
// from GitHub (about 10 s), and posts its result (the last fifth).
const DefaultGrace = 70 * time.Second

// JobLoop runs the RunPod job loop: it takes jobs, runs them through the
// Handler, streams their output and posts their results.
type JobLoop struct {
	o   Options
	cfg *Config
	log *slog.Logger

	mu sync.Mutex
	// held are the jobs taken and not yet answered, running or waiting
	// for a slot; pings carry them.
	held     map[string]*heldJob
	waiting  []*Job // held, not started: an array answer over the limit
	running  int
	slot     chan struct{} // signalled when a job ends
	stopTake bool
	// replace: the platform is to replace the container (Refresh, or a job
	// found the host unfit); the last answer carries stopPod.
	replace  bool
	shutdown bool // SIGTERM came: no job starts any more
	takeStop context.CancelFunc
	jobs     sync.WaitGroup
}

type heldJob struct {
	ctx            context.Context
	parent         context.Context // the held jobs' context: cancelled first on SIGTERM
	cancel         context.CancelCauseFunc
	platformCancel bool
	answered       bool
}

// errShutdown is the cause of held jobs' cancellation on SIGTERM.
var errShutdown = errors.New("the worker is shutting down")

// NewJobLoop makes a job loop; Run starts it.
func NewJobLoop(o Options) (*JobLoop, error) {
	if o.Config == nil || !o.Config.OnPlatform() {
		return nil, errors.New("runpod: no platform configuration (RUNPOD_WEBHOOK_GET_JOB is not set)")
	}
	if o.Handler == nil {
		return nil, errors.New("runpod: no handler")
	}
	o.defaults()
	return &JobLoop{o: o, cfg: o.Config, log: o.Logger, held: map[string]*heldJob{}, slot: make(chan struct{}, 1), replace: o.Refresh}, nil
}

// Run takes and runs jobs until ctx ends (SIGTERM) or, with Refresh, after
// the first answer, or after a job found the host unfit; the jobs still
// held then run to their end. On shutdown it stops taking, cancels held
// jobs, gives them Grace to return and post their results, and returns
// nil. It returns an error only when the StartupCheck failed.
func (w *JobLoop) Run(ctx context.Context) error {
	if err := w.startupCheck(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	jobsCtx, cancelJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelJobs(nil)
	pingCtx, stopPing := context.WithCancel(context.WithoutCancel(ctx))
	pingDone := make(chan struct{})
	go func() { defer close(pingDone); w.heartbeat(pingCtx) }()
	defer func() { stopPing(); <-pingDone }()
	if u := w.cfg.stopURL(); u != "" {
		go w.cancelPoll(ctx, u)
	}
	w.log.Info("worker started", "pod_id", w.cfg.PodID, "concurrency", w.o.Concurrency, "refresh_worker", w.o.Refresh)

	failures := 0
	for {
		if !w.waitSlot(ctx) {
			break
		}
		takeCtx, cancel := context.WithCancel(ctx)
		w.mu.Lock()
		if w.stopTake {
			w.mu.Unlock()
			cancel()
			break
		}
		w.takeStop = cancel
		inProgress := len(w.held) > 0
		w.mu.Unlock()

		start := time.Now()
		jobs, bad, status, err := w.take(takeCtx, inProgress)
		cancel()
		// Whatever happens next, jobs taken are held, run (Concurrency at
		// a time) and answered; on shutdown, without calling the handler.
		if ctx.Err() != nil {
			w.shutDown(cancelJobs)
		}
		w.hold(jobsCtx, jobs)
		for _, m := range bad {
			w.answerMalformed(m)
		}
		if ctx.Err() != nil || w.stopping() {
			break
		}
		switch {
		case err != nil:
			failures++
			wait := w.backoff().Delay(failures)
			w.log.Warn("job take failed", "error", err, "retry_in", wait.Round(time.Millisecond))
			retry.Sleep(ctx, nil, wait)
			continue
		case status == http.StatusTooManyRequests:
			w.log.Info("job take rate limited", "retry_in", w.o.RateLimitWait)
			retry.Sleep(ctx, nil, w.o.RateLimitWait)
			continue
		}
		failures = 0
		if len(jobs) == 0 && len(bad) == 0 && time.Since(start) < w.o.NoJobWait {
			retry.Sleep(ctx, nil, w.o.NoJobWait)
		}
	}

	// Refresh: the jobs still held run to their end, unless SIGTERM comes.
	// Shutdown: cancel what is held, then give the jobs Grace to post
	// their results. Pings go on meanwhile.
	done := make(chan struct{})
	go func() { w.jobs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.shutDown(cancelJobs)
		if !w.finishHeld(done) {
			break
		}
		w.log.Info("shutting down: cancelling held jobs", "jobs", w.heldIDs(), "grace", w.o.Grace)
		cancelJobs(errShutdown)
		grace, cancel := context.WithTimeout(context.Background(), w.o.Grace)
		defer cancel()
		select {
		case <-done:
		case <-grace.Done():
			w.log.Error("jobs did not finish within the grace period", "jobs", w.heldIDs())
		}
	}
	w.log.Info("worker stopped")
	return nil
}

// shutDown marks the loop as shutting down: no job starts any more. Held
// jobs are cancelled at once unless ShutdownFinish lets them run on.
func (w *JobLoop) shutDown(cancelJobs context.CancelCauseFunc) {
	w.mu.Lock()
	w.shutdown = true
	w.mu.Unlock()
	if w.o.ShutdownFinish <= 0 {
		cancelJobs(errShutdown)
	}
}

// finishHeld lets the held jobs run on for ShutdownFinish; it reports
// whether some are still running then.
func (w *JobLoop) finishHeld(done <-chan struct{}) bool {
	if w.o.ShutdownFinish <= 0 {
		return true
	}
	w.log.Info("shutting down: letting held jobs finish", "jobs", w.heldIDs(), "within", w.o.ShutdownFinish)
	fired, stop := retry.Real.Timer(w.o.ShutdownFinish)
	defer stop()
	select {
	case <-done:
		return false
	case <-fired:
		return true
	}
}

func (w *JobLoop) stopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopTake
}

// waitSlot blocks until fewer than Concurrency jobs are held (running or
// waiting), so a take never asks for more than the free slots.
func (w *JobLoop) waitSlot(ctx context.Context) bool {
	for {
		w.mu.Lock()
		n, stop := len(w.held), w.stopTake
		w.mu.Unlock()
		if stop {
			return false
		}
		if n < w.o.Concurrency {
			return true
		}
		select {
		case <-w.slot:
		case <-ctx.Done():
			return false
		}
	}
}

func (w *JobLoop) heldIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, len(w.held))
	for id := range w.held {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// take asks for jobs. A nil error with no jobs is "no job".
func (w *JobLoop) take(ctx context.Context, inProgress bool) ([]*Job, []malformedJob, int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.o.TakeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.cfg.takeURL(inProgress), nil)
	if err != nil {
		return nil, nil, 0, err
	}
	w.headers(req, "")
	resp, err := w.o.Client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, nil, 0, nil // the long poll ran out: ask again
		}
		return nil, nil, 0, scrub(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, resp.StatusCode, fmt.Errorf("read job: %w", scrub(err))
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		jobs, bad := parseTake(body)
		return jobs, bad, resp.StatusCode, nil
	case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusBadRequest:
		return nil, nil, resp.StatusCode, nil
	case resp.StatusCode == http.StatusTooManyRequests:
		return nil, nil, resp.StatusCode, nil
	default:
		return nil, nil, resp.StatusCode, fmt.Errorf("job take: HTTP %d", resp.StatusCode)
	}
}

func (w *JobLoop) headers(req *http.Request, jobID string) {
	req.Header.Set("Authorization", w.cfg.APIKey.Reveal())
	req.Header.Set("User-Agent", "worker-github_runner/"+w.o.Version+" (runpod-go)")
	if jobID != "" {
		req.Header.Set("X-Request-ID", jobID)
	}
}

// answerMalformed posts an error for a job the platform sent without an
// input, so it does not hang IN_PROGRESS (the Python SDK drops it).
func (w *JobLoop) answerMalformed(m malformedJob) {
	if m.id == "" {
		w.log.Error("malformed job without an id: cannot answer it", "reason", m.reason)
		return
	}
	w.log.Error("malformed job", "request_id", m.id, "reason", m.reason)
	body := map[string]any{"error": "malformed job: " + m.reason}
	if w.answering(m.id) {
		body["stopPod"] = true
	}
	w.postFinal(m.id, false, body)
}

// answering marks a job as answered, and says whether its result carries
// stopPod. With Refresh (or once a job found the host unfit), the first
// answer stops the taking (a stopPod ends the worker, whatever the job
// was), and the answer of the last job held carries stopPod, so the
// platform replaces the container only once every job it gave this worker
// is answered.
func (w *JobLoop) answering(jobID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.held[jobID]; h != nil {
		h.answered = true
	}
	if !w.replace {
		return false
	}
	w.stopTakingLocked()
	for _, h := range w.held {
		if !h.answered {
			return false
		}
	}
	return true
}

func (w *JobLoop) stopTakingLocked() {
	w.stopTake = true
	if w.takeStop != nil {
		w.takeStop()
	}
}

// replaceWorker is a job's finding that the host is unfit: take no more
// jobs, and have the last answer ask for a new container.
func (w *JobLoop) replaceWorker() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.replace = true
	w.stopTakingLocked()
}

// hold takes jobs on: each runs when a slot is free (Concurrency at once);
// until then it waits, held, so pings carry it. An array answer can bring
// more jobs than free slots: they run one after another, as the SDK's job
// queue runs them, rather than at once in one RUNNER_ROOT or failed.
func (w *JobLoop) hold(ctx context.Context, jobs []*Job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, job := range jobs {
		if _, dup := w.held[job.ID]; dup {
			w.log.Error("RunPod sent a job this worker already holds: ignoring the copy", "request_id", job.ID)
			continue
		}
		jctx, cancel := context.WithCancelCause(ctx)
		w.held[job.ID] = &heldJob{ctx: jctx, parent: ctx, cancel: cancel}
		w.jobs.Add(1)
		if w.running < w.o.Concurrency {
			w.running++
			go w.run(job)
			continue
		}
		w.waiting = append(w.waiting, job)
		w.log.Info("more jobs than free slots: the job waits its turn", "request_id", job.ID, "concurrency", w.o.Concurrency, "waiting", len(w.waiting))
	}
}

// run runs a job, then the next waiting one in its slot.
func (w *JobLoop) run(job *Job) {
	for job != nil {
		w.mu.Lock()
		h := w.held[job.ID]
		w.mu.Unlock()
		w.runJob(h, job)
		h.cancel(nil)
		w.mu.Lock()
		delete(w.held, job.ID)
		job = nil
		if len(w.waiting) > 0 {
			job, w.waiting = w.waiting[0], w.waiting[1:]
		} else {
			w.running--
		}
		w.mu.Unlock()
		w.jobs.Done()
		select {
		case w.slot <- struct{}{}:
		default:
		}
	}
}

func (w *JobLoop) runJob(h *heldJob, job *Job) {
	ctx := h.ctx
	log := w.log.With("request_id", job.ID)
	start := time.Now()
	p := newPoster(w, job.ID)
	var out any
	var err error
	// The parent is cancelled before its children are, one by one: a job
	// whose turn comes while SIGTERM cancels them must not start.
	w.mu.Lock()
	shutdown := w.shutdown
	w.mu.Unlock()
	if shutdown {
		err = fmt.Errorf("job cancelled before it started: %v", errShutdown)
	} else if h.parent.Err() != nil {
		err = fmt.Errorf("job cancelled before it started: %v", context.Cause(h.parent))
	} else if ctx.Err() != nil {
		err = fmt.Errorf("job cancelled before it started: %v", context.Cause(ctx))
	} else {
		log.Info("job started")
		out, err = w.callHandler(ctx, job, p)
	}

	w.mu.Lock()
	platformCancel := h.platformCancel
	w.mu.Unlock()

	if platformCancel {
		p.close()
		w.answering(job.ID)
		log.Info("job cancelled by RunPod: nothing posted", "seconds", time.Since(start).Seconds())
		return
	}
	body := map[string]any{}
	var unfit *UnfitError
	if errors.As(err, &unfit) && unfit.KeepWorker {
		body["error"] = unfitText(err, unfit, w.cfg.Hostname, w.cfg.PodID)
		log.Warn("this worker cannot run the job", "error", clip(err.Error(), maxErrorBytes), "seconds", time.Since(start).Seconds())
	} else if unfit != nil {
		w.replaceWorker()
		body["error"] = unfitText(err, unfit, w.cfg.Hostname, w.cfg.PodID)
		log.Error("host unfit: job failed; asking RunPod to replace this worker, taking no more jobs",
			"error", clip(err.Error(), maxErrorBytes), "unfit", unfit.detailText(), "seconds", time.Since(start).Seconds())
	} else if err != nil {
		msg := clip(err.Error(), maxErrorBytes)
		body["error"] = msg
		log.Warn("job failed", "error", msg, "seconds", time.Since(start).Seconds())
	} else {
		body["output"] = out
		log.Info("job done", "seconds", time.Since(start).Seconds())
	}
	p.final(body)
}

func (w *JobLoop) callHandler(ctx context.Context, job *Job, u Updater) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("handler panicked", "request_id", job.ID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			out, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return w.o.Handler.Handle(ctx, job, u)
}

// postFinal posts a job's result: retries on 5xx and transport errors; on a
// 4xx (an output over the size limit, say) it posts a short error instead,
// so the job does not hang.
func (w *JobLoop) postFinal(jobID string, streamed bool, body map[string]any) {
	ctx, cancel := context.WithTimeout(context.Background(), w.o.Grace+30*time.Second)
	defer cancel()
	u := jobURL(w.cfg.DoneURL, w.cfg.PodID, jobID, streamed)
	b, err := json.Marshal(body)
	if err != nil {
		fallback := map[string]any{"error": clip("the job's output cannot be encoded as JSON: "+err.Error(), maxErrorBytes)}
		if body["stopPod"] == true {
			fallback["stopPod"] = true
		}
		b, _ = json.Marshal(fallback)
	}
	status, err := w.post(ctx, u, jobID, b)
	if err == nil && status < 300 {
		return
	}
	if err != nil {
		w.log.Error("posting the job result failed", "request_id", jobID, "error", err)
		return
	}
	w.log.Error("RunPod rejected the job result", "request_id", jobID, "status", status, "bytes", len(b))
	short := map[string]any{"error": fmt.Sprintf("RunPod rejected the job result (HTTP %d, %d bytes); the output may be over the 20 MB limit", status, len(b))}
	if body["stopPod"] == true {
		short["stopPod"] = true
	}
	b, _ = json.Marshal(short)
	if status, err := w.post(ctx, u, jobID, b); err != nil || status >= 300 {
		w.log.Error("posting the short error failed too", "request_id", jobID, "status", status, "error", err)
	}
}

// post sends a body, retrying transport errors and 5xx after the SDK's
// waits (PostRetryWaits). It returns the last HTTP status (a 4xx is
// returned, not retried).
func (w *JobLoop) post(ctx context.Context, u, jobID string, body []byte) (int, error) {
	status := 0
	p := retry.Policy{Waits: w.o.PostRetryWaits, Attempts: len(w.o.PostRetryWaits) + 1,
		OnWait: func(_ int, wait time.Duration, err error) {
			w.log.Warn("post failed, retrying", "request_id", jobID, "error", err, "retry_in", wait)
		}}
	err := retry.Do(ctx, p, func(int) error {
		var err error
		if status, err = w.postOnce(ctx, u, jobID, body); err == nil && status >= 500 {
			err = fmt.Errorf("HTTP %d", status)
		}
		return err
	})
	if re := (*retry.Error)(nil); errors.As(err, &re) {
		err = re.Err
	}
	return status, err
}

func (w *JobLoop) postOnce(ctx context.Context, u, jobID string, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	w.headers(req, jobID)
	// The SDK's (odd) content type, kept for parity: the body is JSON.
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := w.o.Client.Do(req)
	if err != nil {
		return 0, scrub(err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// heartbeat pings the platform every interval with the held job ids; it
// runs on its own and never waits for job work.
func (w *JobLoop) heartbeat(ctx context.Context) {
	if w.cfg.PingURL == "" {
		return
	}
	t := time.NewTicker(w.cfg.PingInterval)
	defer t.Stop()
	inflight := make(chan struct{}, 2)
	for {
		select {
		case inflight <- struct{}{}:
			go func() { defer func() { <-inflight }(); w.ping(ctx) }()
		default:
			w.log.Warn("two pings still in flight: skipping one")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *JobLoop) ping(ctx context.Context) {
	u := w.cfg.pingURL(w.heldIDs())
	// The SDK's: four attempts, a fifth of the interval apart.
	p := retry.Policy{Attempts: 4, Base: w.cfg.PingInterval / 5, Max: w.cfg.PingInterval / 5}
	retry.Do(ctx, p, func(int) error { return w.pingOnce(ctx, u) })
}

// pingOnce sends one ping; a transport error, 429 or 5xx is an error.
func (w *JobLoop) pingOnce(ctx context.Context, u string) error {
	pctx, cancel := context.WithTimeout(ctx, 2*w.cfg.PingInterval)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, u, nil)
	if err != nil {
		return nil
	}
	w.headers(req, "")
	resp, err := w.o.Client.Do(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
	}
	if ctx.Err() != nil || err == nil && status != http.StatusTooManyRequests && status < 500 {
		return nil
	}
	w.log.Debug("ping failed", "status", status, "error", scrub(err))
	return fmt.Errorf("ping: HTTP %d: %v", status, scrub(err))
}

// cancelPoll long-polls the job-stop URL and cancels the jobs it names;
// nothing is posted for them.
func (w *JobLoop) cancelPoll(ctx context.Context, u string) {
	failures := 0
	for ctx.Err() == nil {
		ids, err := w.pollStop(ctx, u)
		if errors.Is(err, errRateLimited) {
			failures = 0
			retry.Sleep(ctx, nil, w.o.RateLimitWait)
			continue
		}
		if err != nil {
			failures++
			retry.Sleep(ctx, nil, w.backoff().Delay(failures))
			continue
		}
		failures = 0
		for _, id := range ids {
			w.platformCancel(id)
		}
		if len(ids) == 0 {
			retry.Sleep(ctx, nil, w.o.NoJobWait)
		}
	}
}

// platformCancel cancels a held job; nothing is posted for it. A job still
// waiting for a slot is let go at once.
func (w *JobLoop) platformCancel(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.held[id]
	if h == nil {
		return
	}
	h.platformCancel = true
	h.cancel(errors.New("RunPod cancelled the job"))
	w.log.Info("RunPod cancelled the job", "request_id", id)
	for i, j := range w.waiting {
		if j.ID == id {
			w.waiting = append(w.waiting[:i:i], w.waiting[i+1:]...)
			delete(w.held, id)
			w.jobs.Done()
			select {
			case w.slot <- struct{}{}:
			default:
			}
			return
		}
	}
}

// errRateLimited is a job-stop poll answered 429: asked again after
// RateLimitWait, as a take is.
var errRateLimited = errors.New("job stop: HTTP 429")

func (w *JobLoop) pollStop(ctx context.Context, u string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, w.o.TakeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	w.headers(req, "")
	resp, err := w.o.Client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, nil
		}
		return nil, scrub(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return nil, errRateLimited
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("job stop: HTTP %d", resp.StatusCode)
	}
	var body struct {
		JobsToStop []string `json:"jobsToStop"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return nil, nil
	}
	return body.JobsToStop, nil
}

// backoff is the policy after failed takes and job-stop polls:
// exponential from BackoffBase, capped at BackoffMax, jittered.
func (w *JobLoop) backoff() retry.Policy {
	return retry.Policy{Base: w.o.BackoffBase, Max: w.o.BackoffMax, Jitter: true}
}

// scrub removes URL query strings from transport errors; the platform's
// URLs are not secret, but they are long and noisy.
func scrub(err error) error {
	if err == nil {
		return nil
	}
	s := err.Error()
	if i := strings.Index(s, "?"); i >= 0 {
		if j := strings.IndexAny(s[i:], "\": "); j > 0 {
			s = s[:i] + s[i+j:]
		}
	}
	return errors.New(s)
}
