package runpod

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Every log line is capped, whatever a value carries: a megabyte in an
// attribute, an error or the message gives a line of a few KiB that says
// how much was cut, and JSON lines stay JSON.
func TestLogLinesCapped(t *testing.T) {
	huge := strings.Repeat("é", 1<<19) // 1 MiB of two-byte runes
	for _, jsonLines := range []bool{true, false} {
		var buf bytes.Buffer
		log := NewLogger(&buf, jsonLines, "info").With("request_id", "r1")
		log.Info("runner", "line", huge)
		log.Warn("job failed", "error", errors.New(huge), "a", huge, "b", huge)
		log.Info(huge)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 3 {
			t.Fatalf("json=%v: %d lines", jsonLines, len(lines))
		}
		for i, l := range lines {
			if len(l) > 5<<10 || !strings.Contains(l, "bytes cut") || !strings.Contains(l, "r1") {
				t.Errorf("json=%v line %d: %d bytes: %.200s", jsonLines, i, len(l), l)
			}
			if jsonLines && !json.Valid([]byte(l)) {
				t.Errorf("line %d is not JSON: %.200s", i, l)
			}
			if strings.Contains(l, "\ufffd") {
				t.Errorf("line %d: a rune was cut in half", i)
			}
		}
	}
}
