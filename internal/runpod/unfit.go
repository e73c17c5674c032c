package runpod

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// UnfitError is a Handler error saying this host cannot run jobs at all (a
// GPU missing, a driver too old, a full disk): the job fails at once, the
// result asks RunPod to replace the worker ("stopPod": true, on the last
// answer when other jobs are held), and the loop takes no more jobs. Return
// it as a pointer, wrapped or not:
//
//	return nil, &runpod.UnfitError{Message: report.Error(), Detail: report}
//
// The job's error is then a JSON string in runpod-python's exception form
// with an "unfit" key holding Detail (see ErrorReport), so a client reading
// /status can tell "retry on another worker" from a failed job
// (jobapi.ParseErrorReport). Its
// error_message is the returned error's whole text, wrapping included.
//
// With KeepWorker the host is sound but cannot run this job (it asked for
// more GPUs or GPU memory than this worker has): the job fails with the
// same error form, and the worker stays and takes further jobs.
type UnfitError struct {
	Message    string // one line: what is wrong
	Detail     any    // what was measured: JSON-encodable, no secrets
	KeepWorker bool
}

func (e *UnfitError) Error() string { return e.Message }

// ErrorReport is the JSON a job's error string holds when the host was
// unfit: runpod-python's exception form plus "unfit" (and keep_worker).
// It is jobapi's, so that clients parse it without this package.
type ErrorReport = jobapi.ErrorReport

// unfitText is the job error for err, which wraps e: an ErrorReport as a
// JSON string of at most maxErrorBytes (a job's error must be a string: an
// object shows as COMPLETED). A report that does not fit is left out,
// saying so.
func unfitText(err error, e *UnfitError, hostname, workerID string) string {
	r := ErrorReport{
		ErrorType:     jobapi.UnfitErrorType,
		ErrorMessage:  clip(cmp.Or(err.Error(), "the host cannot run jobs"), 1<<10),
		Hostname:      clip(cmp.Or(hostname, "unknown"), 256),
		WorkerID:      clip(cmp.Or(workerID, "unknown"), 256),
		RunpodVersion: SDKVersion,
		KeepWorker:    e.KeepWorker,
		Unfit:         e.Detail,
	}
	if r.Unfit == nil {
		r.Unfit = struct{}{}
	}
	b, jerr := json.Marshal(r)
	switch {
	case jerr != nil:
		r.Unfit = "the report was left out: it cannot be encoded as JSON: " + clip(jerr.Error(), 256)
	case len(b) > maxErrorBytes:
		r.Unfit = fmt.Sprintf("the report was left out: %d bytes, over the %d-byte error cap", len(b), maxErrorBytes)
	default:
		return string(b)
	}
	b, _ = json.Marshal(r)
	return string(b)
}

// detailText is e's Detail as JSON for the log (the log caps it).
func (e *UnfitError) detailText() string {
	b, err := json.Marshal(e.Detail)
	if err != nil {
		return "(not encodable as JSON: " + clip(err.Error(), 256) + ")"
	}
	return string(b)
}

// checkError is a failed start-up check: its text is bounded, and it
// unwraps to the check's own error.
type checkError struct{ err error }

func (e *checkError) Error() string {
	return "runpod: start-up check failed: " + clip(e.err.Error(), 1<<10)
}

func (e *checkError) Unwrap() error { return e.err }

// startupCheck runs Options.StartupCheck; see there.
func (w *JobLoop) startupCheck(ctx context.Context) error {
	if w.o.StartupCheck == nil {
		return nil
	}
	start := time.Now()
	err := w.o.StartupCheck(ctx)
	switch {
	case err == nil:
		w.log.Info("start-up check passed", "seconds", time.Since(start).Seconds())
		return nil
	case ctx.Err() != nil:
		w.log.Info("shutting down during the start-up check")
		return nil
	}
	attrs := []any{"error", clip(err.Error(), maxErrorBytes)}
	var unfit *UnfitError
	if errors.As(err, &unfit) {
		attrs = append(attrs, "unfit", unfit.detailText())
	}
	w.log.Error("start-up check failed: taking no job, exiting so that RunPod replaces this worker", attrs...)
	w.reportUnhealthy(err)
	return &checkError{err}
}

// reportUnhealthy tells the platform why the worker is about to exit, as
// runpod-python does after a failed fitness check: one ping with
// status=unhealthy, check and reason (at most 256 bytes), best effort,
// within 2 s.
func (w *JobLoop) reportUnhealthy(err error) {
	if w.cfg.PingURL == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u := w.cfg.pingURL(nil)
	u = addQuery(u, "status", "unhealthy")
	u = addQuery(u, "check", "startup")
	u = addQuery(u, "reason", clip(err.Error(), 200))
	req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if rerr != nil {
		return
	}
	w.headers(req, "")
	resp, rerr := w.o.Client.Do(req)
	if rerr != nil {
		w.log.Debug("reporting the worker unhealthy failed", "error", scrub(rerr))
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
}
