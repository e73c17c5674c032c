package runpod

import (
	"io"
	"log/slog"
	"strings"
)

// NewLogger logs text lines, or JSON lines on the platform (when
// RUNPOD_ENDPOINT_ID is set), at level (debug, info, warn, error).
func NewLogger(w io.Writer, jsonLines bool, level string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if jsonLines {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Echo is a trivial handler for protocol testing: it returns the job's
// input. An input {"sleep": N} waits N seconds first (or until the job is
// cancelled), and {"fail": "msg"} fails with msg.
var Echo = HandlerFunc(echoHandle)
