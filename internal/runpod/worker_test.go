package runpod

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

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
		Grace:          3 * time.Second,
		TakeTimeout:    2 * time.Second,
		RateLimitWait:  100 * time.Millisecond,
		BackoffBase:    20 * time.Millisecond,
		BackoffMax:     100 * time.Millisecond,
		NoJobWait:      20 * time.Millisecond,
		PostRetryWaits: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
	}
}

func start(t *testing.T, h Handler, mod func(*Options)) *harness {
	t.Helper()
	p := runpodtest.New()
	t.Cleanup(p.Close)
	logs := &runpodtest.LogBuffer{}
	o := fastOptions(t, p, h, logs)
	if mod != nil {
		mod(&o)
	}
	w, err := New(o)
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
	h := start(t, echo, nil)
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
}

func TestBatch(t *testing.T) {
	h := start(t, echo, func(o *Options) { o.Concurrency = 2 })
	h.p.AddRaw(`[{"id":"a","input":1},{"id":"b","input":2}]`)
	if final(t, h.p, "a").Body["output"] != 1.0 || final(t, h.p, "b").Body["output"] != 2.0 {
		t.Error("batch outputs wrong")
	}
}

func TestNoJobAnswers(t *testing.T) {
	h := start(t, echo, nil)
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
}

func TestRateLimitAndServerErrorStorms(t *testing.T) {
	h := start(t, echo, nil)
	var storm []runpodtest.Response
	for i := 0; i < 5; i++ {
		storm = append(storm, runpodtest.Response{Status: 429})
	}
	for i := 0; i < 8; i++ {
		storm = append(storm, runpodtest.Response{Status: 500}, runpodtest.Response{Status: 503})
	}
	h.p.Script(storm...)
	startAt := time.Now()
	h.p.AddJob("j", "ok")
	final(t, h.p, "j")
	took := time.Since(startAt)
	takes, _ := h.p.Takes()
	// 5 x 429 wait 100 ms each; 16 failures back off (jittered, capped at
	// 100 ms): the storm must take time, not spin.
	if took < 500*time.Millisecond {
		t.Errorf("storm handled in %v: the worker did not wait", took)
	}
	if len(takes) > 25 {
		t.Errorf("%d take requests for a 21-response storm: retries are not bounded", len(takes))
	}
	if !strings.Contains(h.logs.String(), "job take failed") {
		t.Error("failed takes not logged")
	}
}

func TestMalformedJobsAnswered(t *testing.T) {
	h := start(t, echo, nil)
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
}

func TestDoneRetriedOn5xx(t *testing.T) {
	h := start(t, echo, nil)
	h.p.FailDone(500, 502)
	h.p.AddJob("j", "ok")
	if final(t, h.p, "j").Body["output"] != "ok" {
		t.Error("result lost after two 5xx")
	}
}

func TestDone413AnsweredWithShortError(t *testing.T) {
	h := start(t, echo, nil)
	h.p.FailDone(413)
	h.p.AddJob("big", strings.Repeat("x", 1000))
	post := final(t, h.p, "big")
	if e, _ := post.Body["error"].(string); !strings.Contains(e, "HTTP 413") {
		t.Errorf("body = %v", post.Body)
	}
}

func blockUntilCancelled(started chan<- string) Handler {
	return HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		started <- job.ID
		<-ctx.Done()
		return nil, errors.New("job cancelled: " + context.Cause(ctx).Error())
	})
}

func TestCancelViaJobStop(t *testing.T) {
	started := make(chan string, 1)
	h := start(t, blockUntilCancelled(started), nil)
	h.p.AddJob("c1", "x")
	<-started
	h.p.Stop("c1")
	// The handler returns; nothing is posted for a cancelled job.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.logs.String(), "job cancelled by RunPod") {
		if time.Now().After(deadline) {
			t.Fatalf("handler not cancelled:\n%s", h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	for _, d := range h.p.Done() {
		if d.JobID == "c1" {
			t.Errorf("posted %v for a job RunPod cancelled", d.Body)
		}
	}
	// The worker goes on taking jobs.
	h.p.AddJob("next", 1)
	<-started
}

func TestShutdownWhileJobRuns(t *testing.T) {
	started := make(chan string, 1)
	h := start(t, blockUntilCancelled(started), nil)
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
}

func TestRefreshExitsAfterOneJob(t *testing.T) {
	h := start(t, echo, func(o *Options) { o.Refresh = true })
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
}

func TestPingsCarryHeldJobs(t *testing.T) {
	release := make(chan struct{})
	h := start(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		<-release
		return "done", nil
	}), nil)
	time.Sleep(350 * time.Millisecond) // idle pings
	h.p.AddJob("held", 1)
	time.Sleep(500 * time.Millisecond)
	close(release)
	final(t, h.p, "held")
	time.Sleep(350 * time.Millisecond)
	pings := h.p.Pings()
	var idle, busy int
	for i, pg := range pings {
		if pg.Version != SDKVersion {
			t.Errorf("ping %d without runpod_version", i)
		}
		switch pg.JobIDs {
		case "":
			idle++
		case "held":
			busy++
		default:
			t.Errorf("ping with job_id=%q", pg.JobIDs)
		}
	}
	if idle < 4 || busy < 3 {
		t.Errorf("idle pings %d, pings with the held job %d", idle, busy)
	}
	if pings[0].JobIDs != "" || pings[len(pings)-1].JobIDs != "" {
		t.Error("pings before and after the job must carry no job id")
	}
}

func TestSlowHandlerNeverDelaysPings(t *testing.T) {
	h := start(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		// Busy for a second, ignoring its context, as a careless handler would.
		end := time.Now().Add(time.Second)
		for time.Now().Before(end) {
		}
		return "done", nil
	}), nil)
	h.p.AddJob("slow", 1)
	final(t, h.p, "slow")
	pings := h.p.Pings()
	for i := 1; i < len(pings); i++ {
		// Interval 100 ms; allow for scheduling under -race on 2 cores.
		if gap := pings[i].At.Sub(pings[i-1].At); gap > 250*time.Millisecond {
			t.Errorf("ping gap %v at %d (interval 100ms)", gap, i)
		}
	}
}

func TestProgressAndStreamOrderedNeverAfterFinal(t *testing.T) {
	late := make(chan Updater, 1)
	h := start(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
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
	time.Sleep(200 * time.Millisecond)
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
	if n := len(h.p.Streams()); n != 3 {
		t.Errorf("%d stream chunks", n)
	}
	if !strings.Contains(post.Query, "isStream=true") {
		t.Errorf("final post of a streamed job: %q", post.Query)
	}
}

func TestHandlerPanicIsAnError(t *testing.T) {
	h := start(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		panic("boom")
	}), nil)
	h.p.AddJob("pp", 1)
	if e, _ := final(t, h.p, "pp").Body["error"].(string); !strings.Contains(e, "handler panicked: boom") {
		t.Errorf("error = %q", e)
	}
}

func TestTakeAfterJobSaysInProgress(t *testing.T) {
	// With concurrency 2, the take that runs while a job is held says so.
	release := make(chan struct{})
	h := start(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		<-release
		return nil, nil
	}), func(o *Options) { o.Concurrency = 2 })
	h.p.AddJob("a", 1)
	time.Sleep(300 * time.Millisecond)
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
}

func TestUnreachablePlatformBacksOff(t *testing.T) {
	p := runpodtest.New()
	logs := &runpodtest.LogBuffer{}
	o := fastOptions(t, p, echo, logs)
	p.Close() // gone
	w, _ := New(o)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "job take failed"); n == 0 || n > 20 {
		t.Errorf("%d failed takes in 500ms: want some, bounded by backoff", n)
	}
}
