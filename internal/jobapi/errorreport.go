package jobapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// UnfitErrorType is an unfit host's ErrorReport.ErrorType.
const UnfitErrorType = "UnfitError"

// ErrorReport is what a job's error string holds, as JSON, when the
// worker's host was unfit (the worker's fitness check failed before its
// runner started): runpod-python's exception form (error_type,
// error_message, hostname, worker_id, runpod_version; no traceback) plus
// "unfit", the measured facts (package fitness's Report: gpus, driver,
// cuda, disk_free_mib, memory_available_mib, problems). A client reading
// /status/{id} tells it from a failed job with ParseErrorReport: the job
// never started its runner, so the same input may be sent again to run on
// another worker.
type ErrorReport struct {
	ErrorType     string `json:"error_type"` // UnfitErrorType
	ErrorMessage  string `json:"error_message"`
	Hostname      string `json:"hostname"`  // RUNPOD_POD_HOSTNAME, "unknown" when unset
	WorkerID      string `json:"worker_id"` // RUNPOD_POD_ID
	RunpodVersion string `json:"runpod_version"`
	// KeepWorker: the host is sound but short of what this job asked for
	// (gpu_count, min_gpu_memory_mb), so the worker stays and takes other
	// jobs; false: the host is broken and RunPod replaces the worker.
	KeepWorker bool `json:"keep_worker,omitempty"`
	// Unfit is what was measured; a string saying why when it was left
	// out (over the error cap, or not encodable). Parsed, an object is a
	// map[string]any.
	Unfit any `json:"unfit"`
}

// ParseErrorReport reads a job's error: the report, and true, when it is
// an unfit host's (its error_type is UnfitErrorType and it has "unfit");
// nil and false for any other error.
func ParseErrorReport(s string) (*ErrorReport, bool) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") {
		return nil, false
	}
	var r ErrorReport
	if err := json.Unmarshal([]byte(s), &r); err != nil || r.ErrorType != UnfitErrorType || r.Unfit == nil {
		return nil, false
	}
	return &r, true
}

// Limits on what Problems returns: a report is the worker's, but it is
// printed in a workflow's log.
const (
	maxProblems     = 8
	maxProblemBytes = 300
)

// Problems are the report's problems, one line each (control characters
// replaced, each at most 300 bytes, at most 8 and a count of the others);
// the error message when the report has none.
func (r *ErrorReport) Problems() []string {
	var list []string
	if u, ok := r.Unfit.(map[string]any); ok {
		ps, _ := u["problems"].([]any)
		for _, p := range ps {
			if s, ok := p.(string); ok && strings.TrimSpace(s) != "" {
				list = append(list, s)
			}
		}
	}
	if len(list) == 0 {
		list = []string{r.ErrorMessage}
	}
	out := make([]string, 0, min(len(list), maxProblems+1))
	for _, p := range list[:min(len(list), maxProblems)] {
		out = append(out, OneLine(p, maxProblemBytes))
	}
	if n := len(list) - maxProblems; n > 0 {
		out = append(out, fmt.Sprintf("(and %d more)", n))
	}
	return out
}

// OneLine is s on one line, for a log: control characters become spaces,
// and it is cut to at most n bytes (at a character boundary), saying so.
func OneLine(s string, n int) string {
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s))
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
