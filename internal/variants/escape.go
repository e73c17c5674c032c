package variants

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// EscapeControl returns s with every character that could move the cursor,
// end a line or drive a terminal (C0 and C1 controls, DEL, line and
// paragraph separators, bidi overrides, invalid UTF-8) written as a Go
// escape: "a\nb" becomes `a\nb`. Printable text is kept as it is.
func EscapeControl(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteString(escapeRune(r, s[i:i+n]))
		i += n
	}
	return b.String()
}

func needsEscape(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !printable(r) {
			return true
		}
	}
	return false
}

func printable(r rune) bool { return r == ' ' || unicode.IsPrint(r) }

// escapeRune is the text standing for r, which src encodes.
func escapeRune(r rune, src string) string {
	switch {
	case r == utf8.RuneError && len(src) == 1:
		return fmt.Sprintf(`\x%02x`, src[0])
	case printable(r):
		return src
	case r == '\n':
		return `\n`
	case r == '\r':
		return `\r`
	case r == '\t':
		return `\t`
	case r < 0x80:
		return fmt.Sprintf(`\x%02x`, r)
	case r <= 0xffff:
		return fmt.Sprintf(`\u%04x`, r)
	}
	return fmt.Sprintf(`\U%08x`, r)
}

// cut shortens s to at most n bytes (on a character boundary), marking the
// cut with "…".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// short quotes a value for a message, cut to a length that keeps the
// message readable whatever the value.
func short(s string) string {
	return fmt.Sprintf("%q", cut(s, 100))
}
