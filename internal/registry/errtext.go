package registry

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxErrorText caps the text of one registry error. go-containerregistry
// copies a registry's whole answer into its errors (up to 64 KiB: a proxy's
// HTML page, say); the first line says what went wrong.
const maxErrorText = 512

// ErrorText is an error's text fit for a terminal and a metadata file: its
// first line, control characters escaped, at most about 512 bytes, with a
// marker saying how much was cut.
func ErrorText(err error) string {
	s := err.Error()
	cut := 0
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		cut, s = len(s)-i, s[:i]
	}
	var b strings.Builder
	for i, r := range s {
		if b.Len() >= maxErrorText {
			cut += len(s) - i
			break
		}
		switch {
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	if cut > 0 {
		fmt.Fprintf(&b, " [... %d bytes cut]", cut)
	}
	return b.String()
}

// cappedError is an error whose text is ErrorText's; errors.Is and As
// still see the original.
type cappedError struct{ err error }

func (e cappedError) Error() string { return ErrorText(e.err) }
func (e cappedError) Unwrap() error { return e.err }

// capped wraps a registry error so its text stays short.
func capped(err error) error {
	if err == nil {
		return nil
	}
	return cappedError{err}
}
