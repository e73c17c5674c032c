package main

import (
	"log/slog"

	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/worker"
)

// newHandler picks the job handler: the GitHub runner handler, or the echo
// handler for protocol tests.
func newHandler(echo bool, podID string, log *slog.Logger) runpod.Handler {
	if echo {
		return runpod.Echo
	}
	return &worker.Handler{PodID: podID, Log: log}
}
