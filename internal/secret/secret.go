// Package secret holds values that must never reach a log, an error message
// or JSON output by accident: PATs, registration tokens, JIT configs and the
// RunPod API key. Printing or marshalling a Value shows a placeholder; only
// Reveal gives the content, at the one place that sends it.
package secret

import (
	"fmt"
	"log/slog"
	"strings"
)

// Value is a secret string. The zero value is empty.
type Value struct{ s string }

// New wraps s.
func New(s string) Value { return Value{s} }

// Reveal returns the secret itself. Call it only where the value is sent.
func (v Value) Reveal() string { return v.s }

// Empty reports whether no secret is set.
func (v Value) Empty() bool { return v.s == "" }

const redacted = "[redacted]"

func (v Value) String() string                { return redacted }
func (v Value) GoString() string              { return redacted }
func (v Value) Format(f fmt.State, _ rune)    { f.Write([]byte(redacted)) }
func (v Value) MarshalJSON() ([]byte, error)  { return []byte(`"` + redacted + `"`), nil }
func (v Value) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (v Value) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (v *Value) UnmarshalText(b []byte) error { v.s = string(b); return nil }

// Redactor replaces known secret strings in text (runner output, errors
// from libraries that echo requests) with a placeholder.
type Redactor struct{ secrets []string }

// Add registers secrets; values shorter than 6 characters are ignored, as
// masking them would garble ordinary text.
func (r *Redactor) Add(vs ...Value) {
	for _, v := range vs {
		if len(v.s) >= 6 {
			r.secrets = append(r.secrets, v.s)
		}
	}
}

// Redact returns s with every registered secret replaced.
func (r *Redactor) Redact(s string) string {
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}
