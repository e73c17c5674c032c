package runpod

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

// The worker's tests run in testing/synctest bubbles against an in-process
// platform: time is fake, so waits cost nothing and timings are exact.

type harness struct {
	p      *runpodtest.Platform
	logs   *runpodtest.LogBuffer
	cancel context.CancelFunc
	done   chan error
}

func fastOptions(t *testing.T, p *runpodtest.Platform, h Handler, logs *runpodtest.LogBuffer) Options {
	t.Helper()
	env := p.Env("pod-1")
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.PingInterval = 100 * time.Millisecond
	return Options{
		Config:         cfg,
		Handler:        h,
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Client:         p.Client(),
		Grace:          3 * time.Second,
		TakeTimeout:    2 * time.Second,
		RateLimitWait:  100 * time.Millisecond,
		BackoffBase:    20 * time.Millisecond,
		BackoffMax:     100 * time.Millisecond,
		NoJobWait:      20 * time.Millisecond,
		PostRetryWaits: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
	}
}

// startInBubble runs the worker against an in-process platform; call it
// inside a synctest bubble.
func startInBubble(t *testing.T, h Handler, mod func(*Options)) *harness {
	t.Helper()
	p := runpodtest.NewInProcess()
	logs := &runpodtest.LogBuffer{}
	o := fastOptions(t, p, h, logs)
	if mod != nil {
		mod(&o)
	}
	w, err := NewJobLoop(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hs := &harness{p: p, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { hs.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-hs.done:
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop")
		}
		if strings.Contains(logs.String(), p.APIKey) {
			t.Errorf("the API key appears in the logs:\n%s", logs.String())
		}
		if p.Unauthorized() > 0 {
			t.Errorf("%d requests without the API key", p.Unauthorized())
		}
	})
	return hs
}

// advance moves the bubble's fake clock on by d, then waits until every
// goroutine in the bubble is blocked: what was due by then has happened.
// Outside a bubble it panics at once (synctest.Wait), never sleeping.
func advance(d time.Duration) {
	synctest.Wait()
	time.Sleep(d)
	synctest.Wait()
}

var echo = HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
	var v any
	if err := json.Unmarshal(job.Input, &v); err != nil {
		return nil, err
	}
	return v, nil
})

func final(t *testing.T, p *runpodtest.Platform, id string) runpodtest.Post {
	t.Helper()
	post, err := p.WaitFinal(id, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return post
}

func TestJobEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, nil)
		h.p.AddJob("job/1 x", map[string]any{"x": 1.0})
		post := final(t, h.p, "job/1 x")
		if out, _ := post.Body["output"].(map[string]any); out["x"] != 1.0 {
			t.Errorf("output = %v", post.Body)
		}
		if _, ok := post.Body["stopPod"]; ok {
			t.Error("stopPod without refresh")
		}
		if got := post.Header.Get("X-Request-ID"); got != "job/1 x" {
			t.Errorf("X-Request-ID = %q", got)
		}
		if got := post.Header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
			t.Errorf("Content-Type = %q", got)
		}
		if !strings.HasPrefix(post.Header.Get("User-Agent"), "worker-github_runner/") {
			t.Errorf("User-Agent = %q", post.Header.Get("User-Agent"))
		}
		if !strings.Contains(post.Query, "gpu=NVIDIA") || !strings.Contains(post.Query, "isStream=false") {
			t.Errorf("query = %q", post.Query)
		}
		_, queries := h.p.Takes()
		if !strings.Contains(queries[0], "gpu=NVIDIA") || !strings.Contains(queries[0], "job_in_progress=0") {
			t.Errorf("take query = %q", queries[0])
		}
	})
}

// The worker's requests reach a real HTTP server too: one job over
// loopback, as on the platform.
func TestJobOverLoopback(t *testing.T) {
	p := runpodtest.New()
	defer p.Close()
	logs := &runpodtest.LogBuffer{}
	o := fastOptions(t, p, echo, logs)
	o.Refresh = true
	w, err := NewJobLoop(o)
	if err != nil {
		t.Fatal(err)
	}
	p.AddJob("loop", "ok")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("Run = %v, ctx %v", err, ctx.Err())
	}
	if post := final(t, p, "loop"); post.Body["output"] != "ok" || post.Body["stopPod"] != true {
		t.Errorf("result %v", post.Body)
	}
}

func TestBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, func(o *Options) { o.Concurrency = 2 })
		h.p.AddRaw(`[{"id":"a","input":1},{"id":"b","input":2}]`)
		if final(t, h.p, "a").Body["output"] != 1.0 || final(t, h.p, "b").Body["output"] != 2.0 {
			t.Error("batch outputs wrong")
		}
	})
}

func TestNoJobAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, nil)
		h.p.Script(
			runpodtest.Response{Status: 204},
			runpodtest.Response{Status: 400, Body: "bad request"},
			runpodtest.Response{Status: 200, Body: ""},
			runpodtest.Response{Status: 200, Body: "<html>not json</html>"},
			runpodtest.Response{Status: 200, Body: "null"},
		)
		h.p.AddJob("after", "ok")
		if final(t, h.p, "after").Body["output"] != "ok" {
			t.Error("job after no-job answers not run")
		}
		if n := len(h.p.Done()); n != 1 {
			t.Errorf("%d posts, want 1: no-job answers must not be answered", n)
		}
	})
}

// A storm of 429s and 5xx is waited out, not spun through: each 429 waits
// RateLimitWait (100 ms); each failure backs off, doubling from
// BackoffBase (20 ms) up to BackoffMax (100 ms), with jitter between half
// and all of it. In fake time, the storm's length is known.
func TestRateLimitAndServerErrorStorms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, nil)
		var storm []runpodtest.Response
		for range 5 {
			storm = append(storm, runpodtest.Response{Status: 429})
		}
		for range 8 {
			storm = append(storm, runpodtest.Response{Status: 500}, runpodtest.Response{Status: 503})
		}
		h.p.Script(storm...)
		startAt := time.Now()
		h.p.AddJob("j", "ok")
		final(t, h.p, "j")
		took := time.Since(startAt)
		// 5 × 100 ms, then 16 backoffs of 20, 40, 80 and 13 × 100 ms: at
		// least half of them, at most all.
		const rateLimited, backoffs = 500 * time.Millisecond, 1440 * time.Millisecond
		if took < rateLimited+backoffs/2 || took > rateLimited+backoffs {
			t.Errorf("storm handled in %v, want %v to %v", took, rateLimited+backoffs/2, rateLimited+backoffs)
		}
		if takes, _ := h.p.Takes(); len(takes) > 23 {
			t.Errorf("%d take requests for a 21-response storm and a job: retries are not bounded", len(takes))
		}
		if !strings.Contains(h.logs.String(), "job take failed") {
			t.Error("failed takes not logged")
		}
	})
}

func TestMalformedJobsAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, nil)
		h.p.AddRaw(`{"id":"m1"}`)
		h.p.AddRaw(`{"input":{"no":"id"}}`)
		h.p.AddRaw(`{"id":"m2","input":null}`)
		h.p.AddJob("good", "ok")
		for _, id := range []string{"m1", "m2"} {
			post := final(t, h.p, id)
			if e, _ := post.Body["error"].(string); !strings.Contains(e, "malformed job: job has no input") {
				t.Errorf("%s: %v", id, post.Body)
			}
		}
		final(t, h.p, "good")
		if !strings.Contains(h.logs.String(), "malformed job without an id") {
			t.Error("a job without an id was not logged")
		}
	})
}

func TestDoneRetriedOn5xx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, nil)
		h.p.FailDone(500, 502)
		h.p.AddJob("j", "ok")
		if final(t, h.p, "j").Body["output"] != "ok" {
			t.Error("result lost after two 5xx")
		}
	})
}

func TestDone413AnsweredWithShortError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, nil)
		h.p.FailDone(413)
		h.p.AddJob("big", strings.Repeat("x", 1000))
		post := final(t, h.p, "big")
		if e, _ := post.Body["error"].(string); !strings.Contains(e, "HTTP 413") {
			t.Errorf("body = %v", post.Body)
		}
	})
}

func blockUntilCancelled(started chan<- string) Handler {
	return HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		started <- job.ID
		<-ctx.Done()
		return nil, errors.New("job cancelled: " + context.Cause(ctx).Error())
	})
}

func TestCancelViaJobStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan string, 1)
		h := startInBubble(t, blockUntilCancelled(started), nil)
		h.p.AddJob("c1", "x")
		<-started
		h.p.Stop("c1")
		// The handler returns; nothing is posted for a cancelled job, now
		// or later.
		advance(time.Second)
		if !strings.Contains(h.logs.String(), "job cancelled by RunPod") {
			t.Fatalf("handler not cancelled:\n%s", h.logs.String())
		}
		for _, d := range h.p.Done() {
			if d.JobID == "c1" {
				t.Errorf("posted %v for a job RunPod cancelled", d.Body)
			}
		}
		// The worker goes on taking jobs.
		h.p.AddJob("next", 1)
		<-started
	})
}

func TestShutdownWhileJobRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan string, 1)
		h := startInBubble(t, blockUntilCancelled(started), nil)
		h.p.AddJob("s1", "x")
		<-started
		h.cancel() // what SIGTERM does in cmd/worker
		select {
		case err := <-h.done:
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
			h.done <- nil
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after shutdown")
		}
		post := final(t, h.p, "s1")
		if e, _ := post.Body["error"].(string); !strings.Contains(e, "job cancelled") {
			t.Errorf("result = %v", post.Body)
		}
	})
}

func TestRefreshExitsAfterOneJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, func(o *Options) { o.Refresh = true })
		h.p.AddJob("r1", 1)
		h.p.AddJob("r2", 2)
		if post := final(t, h.p, "r1"); post.Body["stopPod"] != true {
			t.Errorf("no stopPod: %v", post.Body)
		}
		select {
		case err := <-h.done:
			if err != nil {
				t.Fatal(err)
			}
			h.done <- nil
		case <-time.After(5 * time.Second):
			t.Fatal("worker did not exit after a refresh job")
		}
		for _, d := range h.p.Done() {
			if d.JobID == "r2" {
				t.Error("took a second job after refresh")
			}
		}
	})
}

// pingIDs lists the job ids each ping carried ("-" for none), and checks
// the pings' version and that they came every interval, on the dot.
func pingIDs(t *testing.T, pings []runpodtest.Ping, interval time.Duration) string {
	t.Helper()
	var ids []string
	for i, pg := range pings {
		if pg.Version != SDKVersion {
			t.Errorf("ping %d without runpod_version", i)
		}
		if i > 0 && pg.At.Sub(pings[i-1].At) != interval {
			t.Errorf("ping %d came %v after the one before (interval %v)", i, pg.At.Sub(pings[i-1].At), interval)
		}
		ids = append(ids, cmp.Or(pg.JobIDs, "-"))
	}
	return strings.Join(ids, " ")
}

// Pings go every interval from the start, and carry the held job exactly
// while it is held.
func TestPingsCarryHeldJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			<-release
			return "done", nil
		}), nil)
		advance(350 * time.Millisecond) // pings at 0, 100, 200, 300 ms
		h.p.AddJob("held", 1)
		advance(500 * time.Millisecond) // 400 to 800 ms
		close(release)
		final(t, h.p, "held")
		advance(320 * time.Millisecond) // 900 to 1100 ms
		if got, want := pingIDs(t, h.p.Pings(), 100*time.Millisecond), "- - - - held held held held held - - -"; got != want {
			t.Errorf("pings carried\n %s, want\n %s", got, want)
		}
	})
}

// A handler that ignores its context and holds on for a second never
// delays a ping: they go every interval, on the dot, carrying the job.
// (The job is held from 50 ms to 1070 ms: no ping falls on its start or
// end, so which pings carry it is exact.)
func TestSlowHandlerNeverDelaysPings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			<-time.After(1020 * time.Millisecond) // whatever ctx says, as a careless handler does
			return "done", nil
		}), nil)
		advance(50 * time.Millisecond)
		h.p.AddJob("slow", 1)
		final(t, h.p, "slow")
		got := pingIDs(t, h.p.Pings(), 100*time.Millisecond)
		if want := "-" + strings.Repeat(" slow", 10); got != want {
			t.Errorf("pings carried\n %s, want\n %s", got, want)
		}
	})
}

func TestProgressAndStreamOrderedNeverAfterFinal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		late := make(chan Updater, 1)
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			for i := 1; i <= 3; i++ {
				u.Progress(i)
				u.Stream(map[string]int{"chunk": i})
			}
			late <- u
			return "final", nil
		}), nil)
		h.p.AddJob("p", 1)
		post := final(t, h.p, "p")
		(<-late).Progress("too late")
		advance(5 * time.Second)
		var seen []any
		for _, d := range h.p.Done() {
			if d.Body["status"] == "IN_PROGRESS" {
				if d.At.After(post.At) {
					t.Error("progress posted after the final result")
				}
				seen = append(seen, d.Body["output"])
			}
		}
		if len(seen) != 3 || seen[0] != 1.0 || seen[2] != 3.0 {
			t.Errorf("progress = %v", seen)
		}
		// Each progress update closes the stream batch before it.
		if items := h.p.StreamItems(); len(h.p.Streams()) != 3 || len(items) != 3 || items[2].(map[string]any)["chunk"] != 3.0 {
			t.Errorf("stream chunks %v in %d posts", items, len(h.p.Streams()))
		}
		if !strings.Contains(post.Query, "isStream=true") {
			t.Errorf("final post of a streamed job: %q", post.Query)
		}
	})
}

func TestHandlerPanicIsAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			panic("boom")
		}), nil)
		h.p.AddJob("pp", 1)
		if e, _ := final(t, h.p, "pp").Body["error"].(string); !strings.Contains(e, "handler panicked: boom") {
			t.Errorf("error = %q", e)
		}
	})
}

func TestTakeAfterJobSaysInProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// With concurrency 2, the take that runs while a job is held says so.
		release := make(chan struct{})
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			<-release
			return nil, nil
		}), func(o *Options) { o.Concurrency = 2 })
		h.p.AddJob("a", 1)
		advance(300 * time.Millisecond)
		close(release)
		final(t, h.p, "a")
		_, qs := h.p.Takes()
		found := false
		for _, q := range qs {
			found = found || strings.Contains(q, "job_in_progress=1")
		}
		if !found {
			t.Errorf("no take with job_in_progress=1: %v", qs)
		}
	})
}

// unreachable is a transport whose every request fails to connect.
type unreachable struct{}

func (unreachable) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("dial tcp 127.0.0.1:9: connect: connection refused")
}

// With the platform unreachable, takes back off: in 500 ms, with backoffs
// of 20, 40, 80, then 100 ms, jittered between half and all, between 7
// and 12 takes fail.
func TestUnreachablePlatformBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		logs := &runpodtest.LogBuffer{}
		o := fastOptions(t, p, echo, logs)
		o.Client = &http.Client{Transport: unreachable{}}
		w, _ := NewJobLoop(o)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if err := w.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(logs.String(), "job take failed"); n < 7 || n > 12 {
			t.Errorf("%d failed takes in 500ms: want 7 to 12, bounded by backoff", n)
		}
		if !strings.Contains(logs.String(), "connection refused") {
			t.Errorf("the log does not say why the takes failed:\n%.1000s", logs.String())
		}
	})
}

// A malformed job answered with stopPod (refresh) ends the worker as any
// other refresh result does: no next job is taken.
func TestMalformedJobWithRefreshEndsWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, func(o *Options) { o.Refresh = true })
		h.p.AddRaw(`{"id":"m1"}`)
		h.p.AddJob("next", 1)
		if post := final(t, h.p, "m1"); post.Body["stopPod"] != true {
			t.Errorf("malformed job answered without stopPod: %v", post.Body)
		}
		select {
		case err := <-h.done:
			h.done <- err
		case <-time.After(5 * time.Second):
			t.Fatal("the worker went on after answering with stopPod")
		}
		for _, d := range h.p.Done() {
			if d.JobID == "next" {
				t.Errorf("took and ran a job after stopPod: %v", d.Body)
			}
		}
	})
}

// An array answer with more jobs than free slots never runs more than the
// concurrency limit at once; the extra job waits its turn, held (pinged),
// and is run and answered.
func TestArrayOverConcurrencyNeverOverlaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		running, most := 0, 0
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			<-time.After(500 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
			return job.ID, nil
		}), func(o *Options) { o.Concurrency = 1 })
		h.p.AddRaw(`[{"id":"a","input":1},{"id":"b","input":2},{"id":"c","input":3}]`)
		for _, id := range []string{"a", "b", "c"} {
			if out := final(t, h.p, id).Body["output"]; out != id {
				t.Errorf("%s: output %v", id, out)
			}
		}
		if most != 1 {
			t.Errorf("%d jobs ran at once with concurrency 1", most)
		}
		queuedPinged := false
		for _, pg := range h.p.Pings() {
			queuedPinged = queuedPinged || pg.JobIDs == "a,b,c"
		}
		if !queuedPinged {
			t.Errorf("no ping carried the queued jobs: %v", h.p.Pings())
		}
	})
}

// A huge error is posted and logged capped, with a marker saying how much
// was cut.
func TestJobErrorCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			return nil, errors.New("boom " + strings.Repeat("e", 1<<20))
		}), nil)
		h.p.AddJob("big-error", 1)
		post := final(t, h.p, "big-error")
		e, _ := post.Body["error"].(string)
		if len(e) > 4200 || !strings.HasPrefix(e, "boom eee") || !strings.Contains(e, "bytes cut") {
			t.Errorf("error of %d bytes posted: %.100q...%.100q", len(e), e, e[max(len(e)-100, 0):])
		}
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if len(l) > 5000 {
				t.Errorf("log line of %d bytes: %.200s", len(l), l)
			}
		}
	})
}

// With refresh, an array answer's jobs all run, one after the other; only
// the last answer asks for the container to be replaced, and then the
// worker ends.
func TestRefreshArrayRunsHeldJobsThenStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			<-time.After(time.Second)
			return job.ID, nil
		}), func(o *Options) { o.Refresh = true })
		h.p.AddRaw(`[{"id":"a","input":1},{"id":"b","input":2}]`)
		h.p.AddJob("later", 3)
		a, b := final(t, h.p, "a"), final(t, h.p, "b")
		if a.Body["stopPod"] != nil || b.Body["stopPod"] != true {
			t.Errorf("stopPod on a: %v, on b: %v; want it on the last answer only", a.Body["stopPod"], b.Body["stopPod"])
		}
		if err := <-h.done; err != nil {
			t.Fatal(err)
		}
		h.done <- nil
		if n := len(h.p.Done()); n != 2 {
			t.Errorf("%d answers, want 2: a job was taken after the refresh", n)
		}
	})
}

// A job waiting for a slot that RunPod cancels is let go at once, without
// running; SIGTERM answers the waiting ones without running them.
func TestWaitingJobsCancelledAndShutDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var ran []string
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			mu.Lock()
			ran = append(ran, job.ID)
			mu.Unlock()
			<-ctx.Done()
			return nil, errors.New("job cancelled: " + context.Cause(ctx).Error())
		}), nil)
		h.p.AddRaw(`[{"id":"a","input":1},{"id":"b","input":2},{"id":"c","input":3}]`)
		advance(time.Second)
		h.p.Stop("b")
		advance(time.Second)
		if pings := h.p.Pings(); pings[len(pings)-1].JobIDs != "a,c" {
			t.Errorf("pings after the cancel carry %q", pings[len(pings)-1].JobIDs)
		}
		h.cancel()
		if err := <-h.done; err != nil {
			t.Fatal(err)
		}
		h.done <- nil
		if e, _ := final(t, h.p, "a").Body["error"].(string); !strings.Contains(e, "the worker is shutting down") {
			t.Errorf("a: %q", e)
		}
		if e, _ := final(t, h.p, "c").Body["error"].(string); e != "job cancelled before it started: the worker is shutting down" {
			t.Errorf("c: %q", e)
		}
		for _, d := range h.p.Done() {
			if d.JobID == "b" {
				t.Errorf("answered b, which RunPod cancelled: %v", d.Body)
			}
		}
		if len(ran) != 1 || ran[0] != "a" {
			t.Errorf("handlers ran for %v, want only a", ran)
		}
	})
}

// Progress updates faster than the platform takes them: the newest one
// always arrives, and the log says some were replaced.
func TestProgressFloodKeepsNewest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			for i := range 1000 {
				u.Progress(i)
			}
			return "ok", nil
		}), nil)
		h.p.AddJob("p", 1)
		final(t, h.p, "p")
		var seen []any
		for _, d := range h.p.Done() {
			if d.Body["status"] == "IN_PROGRESS" {
				seen = append(seen, d.Body["output"])
			}
		}
		if len(seen) == 0 || seen[len(seen)-1] != 999.0 {
			t.Fatalf("%d progress posts, the last %v", len(seen), seen[max(len(seen)-1, 0):])
		}
		for i := 1; i < len(seen); i++ {
			if seen[i].(float64) <= seen[i-1].(float64) {
				t.Fatalf("progress out of order: %v then %v", seen[i-1], seen[i])
			}
		}
		if len(seen) < 1000 && !strings.Contains(h.logs.String(), "sending only the newest") {
			t.Errorf("%d of 1000 progress updates posted, and the log does not say so", len(seen))
		}
	})
}

// With ShutdownFinish (runpod-python's semantics), SIGTERM stops the
// taking and lets a held job run on for that long before it is cancelled.
func TestShutdownFinishLetsHeldJobsEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan string, 2)
		slow := HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			started <- job.ID
			select {
			case <-time.After(time.Duration(len(job.ID)) * time.Second):
				return "done", nil
			case <-ctx.Done():
				return nil, errors.New("job cancelled: " + context.Cause(ctx).Error())
			}
		})
		h := startInBubble(t, slow, func(o *Options) { o.ShutdownFinish = 4 * time.Second; o.Concurrency = 2 })
		// f2 ends 2 s in, long-job-8 would need 10 s; w3 waits for a slot.
		h.p.AddRaw(`[{"id":"f2","input":1},{"id":"long-job-8","input":1},{"id":"w3","input":1}]`)
		<-started
		<-started
		h.cancel()
		if post := final(t, h.p, "f2"); post.Body["output"] != "done" {
			t.Errorf("a job that ends within ShutdownFinish: %v", post.Body)
		}
		if e, _ := final(t, h.p, "w3").Body["error"].(string); e != "job cancelled before it started: the worker is shutting down" {
			t.Errorf("a job waiting at SIGTERM: %q", e)
		}
		if e, _ := final(t, h.p, "long-job-8").Body["error"].(string); !strings.Contains(e, "shutting down") {
			t.Errorf("a job still running after ShutdownFinish: %q", e)
		}
	})
}

func TestShutdownFinishFromEnv(t *testing.T) {
	env := map[string]string{"WORKER_SHUTDOWN_FINISH": "90s"}
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil || c.ShutdownFinish != 90*time.Second {
		t.Fatalf("%v %v", c, err)
	}
	env["WORKER_SHUTDOWN_FINISH"] = "soon"
	if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "WORKER_SHUTDOWN_FINISH") {
		t.Errorf("bad value: %v", err)
	}
}

// Take and ping URLs written with $ID (not $RUNPOD_POD_ID) reach this
// worker's own paths.
func TestTakeURLWithIDPlaceholder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := runpodtest.NewInProcess()
		p.IDPlaceholder = true
		logs := &runpodtest.LogBuffer{}
		o := fastOptions(t, p, echo, logs)
		w, err := NewJobLoop(o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		p.AddJob("id1", "hello")
		if post := final(t, p, "id1"); post.Body["output"] != "hello" {
			t.Errorf("result %v", post.Body)
		}
		advance(2 * time.Second)
		if len(p.Pings()) == 0 {
			t.Error("no ping reached the worker's ping path")
		}
		cancel()
		<-done
	})
}

// job-stop answering 204, 429 or a non-JSON body: the poll goes on, waits
// RateLimitWait after a 429, and a later stop still cancels the job.
func TestJobStopOddAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan string, 1)
		h := startInBubble(t, blockUntilCancelled(started), nil)
		h.p.AddJob("c1", "x")
		<-started
		n := len(h.p.StopPolls())
		h.p.ScriptStop(runpodtest.Response{Status: 429}, runpodtest.Response{Status: 204},
			runpodtest.Response{Status: 200, Body: "<html>busy</html>"}, runpodtest.Response{Status: 200})
		advance(time.Second)
		polls := h.p.StopPolls()[n:]
		for i := 1; i < len(polls) && i < 2; i++ {
			if gap := polls[i].Sub(polls[i-1]); gap < 100*time.Millisecond {
				t.Errorf("job-stop asked again %v after a 429, want RateLimitWait (100ms)", gap)
			}
		}
		h.p.Stop("c1")
		advance(time.Second)
		if !strings.Contains(h.logs.String(), "job cancelled by RunPod") {
			t.Fatalf("stop after odd answers not honoured:\n%s", h.logs.String())
		}
	})
}

// The platform kills the container its grace after SIGTERM: the result of
// a job running then is posted within that grace.
func TestShutdownResultWithinPlatformGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan string, 1)
		h := startInBubble(t, blockUntilCancelled(started), nil) // Grace 3 s
		h.p.AddJob("g1", "x")
		<-started
		start := time.Now()
		h.p.Terminate(h.cancel, 4*time.Second)
		if e, _ := final(t, h.p, "g1").Body["error"].(string); !strings.Contains(e, "shutting down") {
			t.Errorf("result %q", e)
		}
		<-h.done
		h.done <- nil
		if d := time.Since(start); d >= 4*time.Second {
			t.Errorf("the worker took %v to stop, past the platform's grace", d)
		}
		if h.p.Lost() > 0 {
			t.Errorf("%d requests after the platform's grace", h.p.Lost())
		}
	})
}
