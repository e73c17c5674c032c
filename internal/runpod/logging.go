package runpod

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// maxErrorBytes caps a job's error as posted and logged, and the text of
// one log line.
const maxErrorBytes = 4 << 10

// NewLogger logs text lines, or JSON lines on the platform (when
// RUNPOD_ENDPOINT_ID is set), at level (debug, info, warn, error). No line
// grows much past 4 KiB: long values are cut, with a marker saying how
// many bytes were cut.
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
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if jsonLines {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(capHandler{h, maxErrorBytes})
}

// clip cuts s to at most n bytes (at a character boundary) and says how
// many bytes were cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	keep := n
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + fmt.Sprintf(" [... %d bytes cut]", len(s)-keep)
}

// minLogValue is kept of every value, however much of the line's budget
// the values before it used.
const minLogValue = 128

// capHandler cuts a record's message and string values (errors
// included) so that together they stay within max bytes.
type capHandler struct {
	inner slog.Handler
	max   int
}

func (h capHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h capHandler) WithAttrs(as []slog.Attr) slog.Handler {
	budget := h.max
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = capAttr(a, &budget)
	}
	return capHandler{h.inner.WithAttrs(out), h.max}
}

func (h capHandler) WithGroup(name string) slog.Handler {
	return capHandler{h.inner.WithGroup(name), h.max}
}

func (h capHandler) Handle(ctx context.Context, r slog.Record) error {
	budget := h.max
	nr := slog.NewRecord(r.Time, r.Level, capString(r.Message, &budget), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(capAttr(a, &budget))
		return true
	})
	return h.inner.Handle(ctx, nr)
}

func capAttr(a slog.Attr, budget *int) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, capString(v.String(), budget))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = capAttr(ga, budget)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, capString(err.Error(), budget))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func capString(s string, budget *int) string {
	s = clip(s, max(*budget, minLogValue))
	*budget -= len(s)
	return s
}

// Echo is a trivial handler for protocol testing: it returns the job's
// input. An input {"sleep": N} waits N seconds first (or until the job is
// cancelled), and {"fail": "msg"} fails with msg.
var Echo = HandlerFunc(echoHandle)
