package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobhandler"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
)

// newHandler picks the job handler: the GitHub runner handler, or the echo
// handler for protocol tests. grace is the shutdown grace the handler's
// cleanup must fit in.
func newHandler(echo bool, podID string, grace time.Duration, log *slog.Logger) runpod.Handler {
	if echo {
		return runpod.Echo
	}
	return &jobhandler.Handler{PodID: podID, Log: log, Grace: grace}
}

// sweepWait is how long a worker that is done (not stopped by a signal)
// lets a sweep already under way finish before it exits.
const sweepWait = 30 * time.Second

// startSweep removes the runners that killed workers left registered
// (jobhandler.Handler.Sweep) once the first job's registration is over, so
// the sweep never competes with it. The returned function stops the
// sweep and waits for it: at once after a signal (ctx ended), else after
// up to sweepWait for a sweep under way; a sweep not yet started is
// dropped.
func startSweep(ctx context.Context, h runpod.Handler, log *slog.Logger) func() {
	wh, ok := h.(*jobhandler.Handler)
	if !ok {
		return func() {}
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-wh.Registered():
		case <-sctx.Done():
			return
		}
		if err := wh.Sweep(sctx); err != nil {
			log.Warn("runner sweep failed", "error", err)
		}
	}()
	return func() {
		select {
		case <-wh.Registered():
			wait, stop := context.WithTimeout(ctx, sweepWait)
			select {
			case <-done:
			case <-wait.Done():
			}
			stop()
		default:
		}
		cancel()
		<-done
	}
}
