package main

import (
	"errors"
	"log/slog"

	"github.com/runpod-workers/worker-github_runner/internal/runpod"
)

// newHandler picks the job handler: the echo handler for protocol tests, or
// the GitHub runner handler.
func newHandler(echo bool, log *slog.Logger) (runpod.Handler, error) {
	if echo {
		return runpod.Echo, nil
	}
	return nil, errors.New("the GitHub runner handler is not wired yet; use --echo")
}
