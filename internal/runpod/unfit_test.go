package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// unfitReport is what a fitness check reports: hardware facts.
var unfitReport = map[string]any{"gpus": []any{}, "disk_free_mib": 512.0, "problems": []any{"no NVIDIA device in /dev"}}

// parseErrorJSON decodes a job error posted as a JSON string, with the
// keys runpod-python's exception form has plus "unfit".
func parseErrorJSON(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	s, ok := body["error"].(string)
	if !ok {
		t.Fatalf("error is not a string (an object-valued error shows as COMPLETED): %v", body)
	}
	if len(s) > maxErrorBytes {
		t.Errorf("error of %d bytes, over the %d-byte cap", len(s), maxErrorBytes)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		t.Fatalf("error is not a JSON string: %v\n%.300s", err, s)
	}
	return e
}

// A handler's UnfitError (wrapped or not) fails the job at once with a
// machine-readable error, asks RunPod to replace the worker (stopPod), and
// the worker takes no more jobs.
func TestUnfitErrorReplacesWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			calls++
			return nil, fmt.Errorf("before registering: %w", &UnfitError{Message: "host unfit: no NVIDIA device in /dev", Detail: unfitReport})
		}), nil)
		h.p.AddJob("u1", map[string]any{})
		post := final(t, h.p, "u1")
		if post.Body["stopPod"] != true {
			t.Errorf("no stopPod: %v", post.Body)
		}
		e := parseErrorJSON(t, post.Body)
		want := map[string]any{"error_type": "UnfitError", "error_message": "before registering: host unfit: no NVIDIA device in /dev",
			"hostname": "pod-1-host", "worker_id": "pod-1", "runpod_version": SDKVersion}
		for k, v := range want {
			if e[k] != v {
				t.Errorf("%s = %v, want %v", k, e[k], v)
			}
		}
		if u, _ := e["unfit"].(map[string]any); u == nil || u["disk_free_mib"] != 512.0 {
			t.Errorf("unfit = %v, want the report", e["unfit"])
		}
		if r, ok := jobapi.ParseErrorReport(post.Body["error"].(string)); !ok || r.KeepWorker || r.Problems()[0] != "no NVIDIA device in /dev" {
			t.Errorf("jobapi.ParseErrorReport: %+v %v", r, ok)
		}
		h.p.AddJob("u2", map[string]any{})
		select {
		case err := <-h.done:
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
			h.done <- nil
		case <-time.After(5 * time.Second):
			t.Fatal("the worker went on after an unfit host asked to be replaced")
		}
		takes, _ := h.p.Takes()
		for _, at := range takes {
			if at.After(post.At) {
				t.Errorf("a take at %v, after the unfit answer at %v", at, post.At)
			}
		}
		if calls != 1 || len(h.p.Done()) != 1 {
			t.Errorf("%d handler calls, %d answers: a job was taken after the unfit one", calls, len(h.p.Done()))
		}
		if !strings.Contains(h.logs.String(), "host unfit") {
			t.Errorf("the log does not say the host is unfit:\n%s", h.logs.String())
		}
	})
}

// With jobs held alongside the unfit one, those still finish and post; the
// last answer carries stopPod (as with refresh, RunPod replaces the
// container once every job it gave is answered), and nothing more is taken.
func TestUnfitErrorLetsHeldJobsFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			if job.ID == "unfit" {
				return nil, &UnfitError{Message: "disk full", Detail: unfitReport}
			}
			<-time.After(2 * time.Second)
			return job.ID, nil
		}), func(o *Options) { o.Concurrency = 2 })
		h.p.AddRaw(`[{"id":"slow","input":1},{"id":"unfit","input":2}]`)
		h.p.AddJob("later", 3)
		u, s := final(t, h.p, "unfit"), final(t, h.p, "slow")
		if e := parseErrorJSON(t, u.Body); e["error_message"] != "disk full" || e["unfit"] == nil {
			t.Errorf("unfit answer: %v", e)
		}
		if s.Body["output"] != "slow" || s.Body["stopPod"] != true || u.Body["stopPod"] != nil {
			t.Errorf("slow: %v, unfit: %v; want slow's output with stopPod on the last answer", s.Body, u.Body)
		}
		if err := <-h.done; err != nil {
			t.Fatal(err)
		}
		h.done <- nil
		if n := len(h.p.Done()); n != 2 {
			t.Errorf("%d answers, want 2: a job was taken after the unfit answer", n)
		}
	})
}

// A sound host that cannot run one job (it asked for more GPUs than this
// worker has) fails that job in the same error form, without stopPod, and
// the worker goes on taking jobs.
func TestUnfitForThisJobKeepsTheWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			if job.ID == "big" {
				return nil, &UnfitError{Message: "1 GPUs, 8 wanted by the job", Detail: unfitReport, KeepWorker: true}
			}
			return job.ID, nil
		}), nil)
		h.p.AddJob("big", map[string]any{})
		big := final(t, h.p, "big")
		if e := parseErrorJSON(t, big.Body); e["error_type"] != "UnfitError" || e["unfit"] == nil {
			t.Errorf("error: %v", e)
		}
		if big.Body["stopPod"] != nil {
			t.Errorf("stopPod on a sound worker: %v", big.Body)
		}
		if r, ok := jobapi.ParseErrorReport(big.Body["error"].(string)); !ok || !r.KeepWorker || r.WorkerID != "pod-1" {
			t.Errorf("jobapi.ParseErrorReport: %+v %v, want a report that keeps the worker", r, ok)
		}
		h.p.AddJob("next", map[string]any{})
		if next := final(t, h.p, "next"); next.Body["output"] != "next" || next.Body["stopPod"] != nil {
			t.Errorf("the next job: %v", next.Body)
		}
	})
}

// A report too big for the error cap is left out, and the error stays a
// JSON string that says so and still holds the "unfit" key.
func TestUnfitErrorOverCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		huge := map[string]any{"problems": []string{strings.Repeat("p", 10_000)}}
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			return nil, &UnfitError{Message: "m" + strings.Repeat("x", 10_000), Detail: huge}
		}), nil)
		h.p.AddJob("big", 1)
		post := final(t, h.p, "big")
		e := parseErrorJSON(t, post.Body)
		if u, _ := e["unfit"].(string); !strings.Contains(u, "over") {
			t.Errorf("unfit = %.200v, want a note that the report was left out", e["unfit"])
		}
		if m, _ := e["error_message"].(string); !strings.HasPrefix(m, "mxxx") || !strings.Contains(m, "bytes cut") {
			t.Errorf("error_message = %.200q", m)
		}
		if post.Body["stopPod"] != true {
			t.Errorf("no stopPod: %v", post.Body["stopPod"])
		}
	})
}

// A report that cannot be encoded is left out too; the job is still failed
// as unfit.
func TestUnfitErrorUnencodableDetail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			return nil, &UnfitError{Message: "no GPU", Detail: map[string]any{"f": func() {}}}
		}), nil)
		h.p.AddJob("odd", 1)
		post := final(t, h.p, "odd")
		if e := parseErrorJSON(t, post.Body); e["error_message"] != "no GPU" || e["unfit"] == nil {
			t.Errorf("error = %v", e)
		}
	})
}

// Other errors stay plain strings, as before.
func TestPlainErrorStaysAString(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			return nil, errors.New("the workflow job failed")
		}), nil)
		h.p.AddJob("plain", 1)
		if post := final(t, h.p, "plain"); post.Body["error"] != "the workflow job failed" || post.Body["stopPod"] != nil {
			t.Errorf("result %v", post.Body)
		}
	})
}

// A failing start-up check: no job is taken, Run returns an error wrapping
// the check's, the log says it in one line, and the platform hears the
// worker is unhealthy (as runpod-python reports it) before the exit.
func TestStartupCheckFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unfit := &UnfitError{Message: "host unfit: the driver supports CUDA 12.2, the image needs 12.8", Detail: unfitReport}
		calls := 0
		h := startInBubble(t, echo, func(o *Options) {
			o.StartupCheck = func(context.Context) error { calls++; return unfit }
		})
		h.p.AddJob("never", 1)
		var err error
		select {
		case err = <-h.done:
			h.done <- nil
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after a failed start-up check")
		}
		if !errors.Is(err, unfit) || !strings.Contains(err.Error(), "CUDA 12.2") {
			t.Errorf("Run = %v, want an error wrapping the check's", err)
		}
		if takes, _ := h.p.Takes(); len(takes) != 0 || calls != 1 {
			t.Errorf("%d takes, %d checks; want none and one", len(takes), calls)
		}
		var lines []string
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, "start-up check failed") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "CUDA 12.2") || len(lines[0]) > 5000 {
			t.Errorf("want one bounded log line about the check, got %q", lines)
		}
		pings := h.p.Pings()
		if len(pings) != 1 || pings[0].Status != "unhealthy" || pings[0].Check != "startup" || !strings.Contains(pings[0].Reason, "CUDA 12.2") {
			t.Errorf("pings %+v, want one unhealthy report", pings)
		}
	})
}

// A hostile check error is bounded in the log, the error and the report.
func TestStartupCheckHugeError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, func(o *Options) {
			o.StartupCheck = func(context.Context) error { return errors.New(strings.Repeat("z", 1<<20)) }
		})
		var err error
		select {
		case err = <-h.done:
			h.done <- nil
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after a failed start-up check")
		}
		if err == nil || len(err.Error()) > 2000 {
			t.Errorf("Run = %.200v (%d bytes), want a bounded error", err, len(fmt.Sprint(err)))
		}
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if len(l) > 5000 {
				t.Errorf("log line of %d bytes", len(l))
			}
		}
		if pings := h.p.Pings(); len(pings) != 1 || len(pings[0].Reason) > 256 {
			t.Errorf("unhealthy report: %+.300v, want one with a reason of at most 256 bytes", pings)
		}
	})
}

// A passing check runs once, before the first take; jobs then run.
func TestStartupCheckPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var h *harness
		takesAtCheck := -1
		checked := make(chan struct{})
		h = startInBubble(t, echo, func(o *Options) {
			o.StartupCheck = func(context.Context) error {
				<-checked // h is set by then
				takes, _ := h.p.Takes()
				takesAtCheck = len(takes)
				return nil
			}
		})
		close(checked)
		h.p.AddJob("ok", "fine")
		if final(t, h.p, "ok").Body["output"] != "fine" {
			t.Error("job not run after a passing check")
		}
		if takesAtCheck != 0 {
			t.Errorf("%d takes before the check", takesAtCheck)
		}
	})
}

// SIGTERM during the start-up check is a shutdown, not a failure.
func TestStartupCheckInterruptedBySIGTERM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, echo, func(o *Options) {
			o.StartupCheck = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		})
		advance(time.Second)
		h.cancel()
		if err := <-h.done; err != nil {
			t.Errorf("Run = %v, want nil on shutdown", err)
		}
		h.done <- nil
		if takes, _ := h.p.Takes(); len(takes) != 0 {
			t.Errorf("%d takes", len(takes))
		}
	})
}

// The default grace holds the runner's stop: SIGINT and up to 45 s
// (listener.DefaultStopGrace) before SIGKILL, then its removal (about
// 10 s): a job that needs 55 s after SIGTERM's cancel still posts its
// result before Run returns (and the process exits).
func TestDefaultGraceHoldsTheRunnersStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan string, 1)
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			started <- job.ID
			<-ctx.Done()
			time.Sleep(55 * time.Second) // the runner's stop, then its removal
			return nil, errors.New("job cancelled: the runner was stopped and removed")
		}), func(o *Options) { o.Grace = 0 })
		h.p.AddJob("long-stop", 1)
		<-started
		h.cancel()
		if err := <-h.done; err != nil {
			t.Fatal(err)
		}
		h.done <- nil
		var got bool
		for _, d := range h.p.Done() {
			got = got || d.JobID == "long-stop"
		}
		if !got {
			t.Errorf("Run returned before the job's result was posted:\n%s", h.logs.String())
		}
	})
}

// Locally (--test_input, --rp_serve_api) an unfit host's error has the same
// JSON form, so a client of the local API parses it as on RunPod.
func TestUnfitErrorLocally(t *testing.T) {
	t.Setenv("RUNPOD_POD_HOSTNAME", "")
	t.Setenv("RUNPOD_POD_ID", "")
	unfit := HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		return nil, &UnfitError{Message: "no GPU", Detail: unfitReport}
	})
	check := func(where, s string) {
		var e ErrorReport
		if err := json.Unmarshal([]byte(s), &e); err != nil || e.ErrorType != "UnfitError" || e.ErrorMessage != "no GPU" ||
			e.WorkerID != "local" || e.Hostname != "unknown" || e.Unfit == nil {
			t.Errorf("%s: error %q (%v)", where, s, err)
		}
	}
	var out bytes.Buffer
	if code := RunTestInput(context.Background(), unfit, []byte(`{"input":{}}`), &out, nil); code != 1 {
		t.Errorf("--test_input: exit %d", code)
	}
	var res map[string]any
	json.Unmarshal(out.Bytes(), &res)
	s, _ := res["error"].(string)
	check("--test_input", s)
	synctest.Test(t, func(t *testing.T) {
		r := call(t, NewAPIServer(unfit, 1, nil), "POST", "/runsync", `{"input":{}}`)
		s, _ := r["error"].(string)
		if r["status"] != "FAILED" {
			t.Errorf("runsync: %v", r)
		}
		check("/runsync", s)
	})
}

// A job that does not return in time does not hold the worker past the
// default grace: Run returns DefaultGrace after SIGTERM's cancel.
func TestDefaultGraceBoundsShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan string, 1)
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			started <- job.ID
			<-ctx.Done()
			time.Sleep(100 * time.Second)
			return nil, errors.New("too late")
		}), func(o *Options) { o.Grace = 0 })
		h.p.AddJob("stuck", 1)
		<-started
		start := time.Now()
		h.cancel()
		<-h.done
		h.done <- nil
		if d := time.Since(start); d != DefaultGrace || DefaultGrace != 70*time.Second {
			t.Errorf("Run returned %v after SIGTERM, want the default grace, 70 s", d)
		}
		if !strings.Contains(h.logs.String(), "jobs did not finish within the grace period") {
			t.Errorf("the log does not say the grace ran out:\n%s", h.logs.String())
		}
		time.Sleep(time.Minute) // let the stuck handler end inside the bubble
	})
}
