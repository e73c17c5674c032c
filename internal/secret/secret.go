// Package secret holds values that must never reach a log, an error message
// or JSON output by accident: PATs, registration tokens, JIT configs and the
// RunPod API key. Printing or marshalling a Value shows a placeholder; only
// Reveal gives the content, at the one place that sends it.
package secret

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
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
// from libraries that echo requests) with a placeholder. It is safe for
// concurrent use.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string
}

// Add registers secrets; values shorter than 6 characters are ignored, as
// masking them would garble ordinary text. A multi-line secret (a PEM
// key, also with its newlines written as \n) is registered line by line
// too, since output arrives a line at a time; lines under 16 characters
// are skipped.
func (r *Redactor) Add(vs ...Value) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range vs {
		if len(v.s) < 6 || slices.Contains(r.secrets, v.s) {
			continue
		}
		r.secrets = append(r.secrets, v.s)
		if !strings.Contains(v.s, "\n") && !strings.Contains(v.s, `\n`) {
			continue
		}
		for _, l := range strings.FieldsFunc(strings.ReplaceAll(v.s, `\n`, "\n"), func(r rune) bool { return r == '\n' || r == '\r' }) {
			if l = strings.TrimSpace(l); len(l) >= 16 && !slices.Contains(r.secrets, l) {
				r.secrets = append(r.secrets, l)
			}
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	slices.SortStableFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

// Redact returns s with every registered secret replaced.
func (r *Redactor) Redact(s string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// Preview shows an untrusted value (job input) in a message: quoted with
// control characters escaped, and only when it is short (previewMax) and
// does not look like a credential (a known token prefix, or a run of
// tokenRun letters and digits mixed, like an AWS key id or a random
// token); otherwise just its length. Input is never echoed whole: it may
// be megabytes, or a token pasted into the wrong field.
func Preview(s string) string {
	switch {
	case len(s) <= 1024 && looksLikeCredential(s):
		return "(a value that looks like a credential)"
	case len(s) > previewMax:
		return fmt.Sprintf("(a value of %d bytes)", len(s))
	}
	return strconv.Quote(s)
}

const (
	previewMax = 20
	tokenRun   = 16
)

// credentialPrefixes start GitHub tokens (classic, fine-grained, OAuth,
// user, server, refresh), RunPod API keys and PEM blocks.
var credentialPrefixes = []string{"ghp_", "github_pat_", "gho_", "ghu_", "ghs_", "ghr_", "rpa_", "-----BEGIN"}

func looksLikeCredential(s string) bool {
	l := strings.ToLower(s)
	for _, p := range credentialPrefixes {
		if strings.Contains(l, strings.ToLower(p)) {
			return true
		}
	}
	return hasTokenRun(s)
}

// hasTokenRun reports a run of at least tokenRun ASCII letters and digits
// with both in it.
func hasTokenRun(s string) bool {
	n, letters, digits := 0, false, false
	for i := 0; i <= len(s); i++ {
		var c byte
		if i < len(s) {
			c = s[i]
		}
		switch {
		case c >= '0' && c <= '9':
			n, digits = n+1, true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			n, letters = n+1, true
		default:
			if n >= tokenRun && letters && digits {
				return true
			}
			n, letters, digits = 0, false, false
		}
	}
	return false
}

// CapLine shortens s to at most limit bytes (on a UTF-8 boundary), saying
// so: an error or log line never carries megabytes.
func CapLine(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	marker := fmt.Sprintf("... [cut, %d bytes in all]", len(s))
	cut := max(limit-len(marker), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + marker
}
