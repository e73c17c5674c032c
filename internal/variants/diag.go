package variants

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// Printing limits: whatever a file holds, its diagnostics stay readable
// and a few KiB long.
const (
	// MaxPrintedDiagnostics is how many diagnostics are printed; the rest
	// are counted.
	MaxPrintedDiagnostics = 20
	maxSummaryBytes       = 200
	maxDetailBytes        = 1000
	maxFileNameBytes      = 300
	// frameWidth is the widest a code-frame line is printed, in characters.
	frameWidth = 120
)

// WriteDiagnostics prints diagnostics as
//
//	variants.hcl:12:10: error: Malformed CUDA version
//	  Variant "gpu": "12.x" is not a CUDA version like 12.6.3.
//	     11 |   flavour = "gpu"
//	     12 |   cuda    = "12.x"
//	        |             ^^^^^^
//
// so editors and CI logs can jump to the place. Errors come before warnings.
// Only the first MaxPrintedDiagnostics are printed, then a count of the
// others. Control characters (a file may carry terminal escape sequences)
// are escaped, and long lines cut.
func WriteDiagnostics(w io.Writer, files Files, diags hcl.Diagnostics) {
	shown := 0
	hidden := map[hcl.DiagnosticSeverity]int{}
	for _, sev := range []hcl.DiagnosticSeverity{hcl.DiagError, hcl.DiagWarning} {
		for _, d := range diags {
			switch {
			case d.Severity != sev:
			case shown < MaxPrintedDiagnostics:
				writeDiagnostic(w, files, d)
				shown++
			default:
				hidden[sev]++
			}
		}
	}
	var more []string
	if n := hidden[hcl.DiagError]; n > 0 {
		more = append(more, plural(n, "more error"))
	}
	if n := hidden[hcl.DiagWarning]; n > 0 {
		more = append(more, plural(n, "more warning"))
	}
	if len(more) > 0 {
		fmt.Fprintf(w, "... and %s not shown.\n\n", strings.Join(more, " and "))
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// FormatDiagnostics is WriteDiagnostics into a string.
func FormatDiagnostics(files Files, diags hcl.Diagnostics) string {
	var b bytes.Buffer
	WriteDiagnostics(&b, files, diags)
	return b.String()
}

func writeDiagnostic(w io.Writer, files Files, d *hcl.Diagnostic) {
	sev := "error"
	if d.Severity == hcl.DiagWarning {
		sev = "warning"
	}
	summary := EscapeControl(cut(d.Summary, maxSummaryBytes))
	if d.Subject == nil {
		fmt.Fprintf(w, "%s: %s\n", sev, summary)
	} else {
		name := EscapeControl(cut(d.Subject.Filename, maxFileNameBytes))
		fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", name, d.Subject.Start.Line, d.Subject.Start.Column, sev, summary)
	}
	if d.Detail != "" {
		for _, line := range strings.Split(cut(d.Detail, maxDetailBytes), "\n") {
			fmt.Fprintf(w, "  %s\n", EscapeControl(line))
		}
	}
	if d.Subject != nil {
		if f := files[d.Subject.Filename]; f != nil {
			writeFrame(w, f.Bytes, *d.Subject)
		}
	}
	fmt.Fprintln(w)
}

// writeFrame prints the line before the subject and the subject's lines
// (at most three), underlining the subject on its first line.
func writeFrame(w io.Writer, src []byte, rng hcl.Range) {
	start, ok := lineStart(src, rng.Start.Line)
	if !ok {
		return
	}
	first := max(rng.Start.Line-1, 1)
	last := min(rng.End.Line, rng.Start.Line+2)
	if last < rng.Start.Line {
		last = rng.Start.Line
	}
	width := len(fmt.Sprint(last))
	if first < rng.Start.Line {
		prev, _ := lineStart(src[:start], first)
		text, _, _ := frameLine(src[prev:max(start-1, prev)], -1, -1)
		fmt.Fprintf(w, "  %*d | %s\n", width, first, text)
	}
	for n := rng.Start.Line; n <= last && start <= len(src); n++ {
		end := start + lineLen(src[start:])
		line := src[start:end]
		if n != rng.Start.Line {
			text, _, _ := frameLine(line, -1, -1)
			fmt.Fprintf(w, "  %*d | %s\n", width, n, text)
		} else {
			from := subjectOffset(rng.Start, start, len(line))
			to := len(line)
			if rng.End.Line == n {
				to = subjectOffset(rng.End, start, len(line))
			}
			text, c0, c1 := frameLine(line, from, max(to, from+1))
			fmt.Fprintf(w, "  %*d | %s\n", width, n, text)
			fmt.Fprintf(w, "  %*s | %s%s\n", width, "", strings.Repeat(" ", c0), strings.Repeat("^", max(c1-c0, 1)))
		}
		start = end + 1
	}
}

// lineStart is the byte offset where line n (1-based) of src starts.
func lineStart(src []byte, n int) (int, bool) {
	off := 0
	for ; n > 1; n-- {
		i := bytes.IndexByte(src[off:], '\n')
		if i < 0 {
			return 0, false
		}
		off += i + 1
	}
	return off, true
}

func lineLen(b []byte) int {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return i
	}
	return len(b)
}

// subjectOffset is pos as a byte offset in the line starting at lineStart,
// from its byte offset when it is consistent, else from its column.
func subjectOffset(pos hcl.Pos, lineStart, lineLen int) int {
	if off := pos.Byte - lineStart; off >= 0 && off <= lineLen {
		return off
	}
	return min(max(pos.Column-1, 0), lineLen)
}

// frameLine renders one source line for a frame: control characters
// escaped, tabs as spaces, cut to frameWidth characters around the byte
// range [from, to) (the subject; -1 for none). It returns the text and the
// subject's columns in it.
func frameLine(line []byte, from, to int) (string, int, int) {
	anchor := max(from, 0)
	// A character is at most 4 bytes: this window holds every byte that
	// can be shown.
	lo := max(anchor-4*frameWidth, 0)
	hi := min(anchor+4*frameWidth, len(line))
	for lo > 0 && !utf8.RuneStart(line[lo]) {
		lo--
	}
	type cell struct {
		text string
		off  int
	}
	var cells []cell
	for i := lo; i < hi; {
		r, n := utf8.DecodeRune(line[i:])
		text := escapeRune(r, string(line[i:i+n]))
		if r == '\t' {
			text = " "
		}
		for _, c := range text { // one cell per shown character
			cells = append(cells, cell{string(c), i})
		}
		i += n
	}
	col := func(off int) int { // the first cell at or after byte off
		for i, c := range cells {
			if c.off >= off {
				return i
			}
		}
		return len(cells)
	}
	c0, c1 := col(from), col(to)
	ws := 0
	if lo > 0 || hi < len(line) || len(cells) > frameWidth {
		ws = max(min(c0-frameWidth/3, len(cells)-frameWidth), 0)
	}
	we := min(ws+frameWidth, len(cells))
	var b strings.Builder
	shift := -ws
	if lo > 0 || ws > 0 {
		b.WriteString("…")
		shift++
	}
	for _, c := range cells[ws:we] {
		b.WriteString(c.text)
	}
	if hi < len(line) || we < len(cells) {
		b.WriteString("…")
	}
	c0 = min(max(c0+shift, 0), we+shift)
	c1 = max(min(c1+shift, we+shift), c0+1)
	return b.String(), c0, c1
}
