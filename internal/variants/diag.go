package variants

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints diagnostics as
//
//	variants.hcl:12:10: error: Malformed CUDA version
//	  Variant "gpu": "12.x" is not a CUDA version like 12.6.3.
//	     11 |   flavour = "gpu"
//	     12 |   cuda    = "12.x"
//	        |             ^^^^^^
//
// so editors and CI logs can jump to the place. Errors come before warnings,
// each group in source order.
func WriteDiagnostics(w io.Writer, files Files, diags hcl.Diagnostics) {
	for _, sev := range []hcl.DiagnosticSeverity{hcl.DiagError, hcl.DiagWarning} {
		for _, d := range diags {
			if d.Severity == sev {
				writeDiagnostic(w, files, d)
			}
		}
	}
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
	if d.Subject == nil {
		fmt.Fprintf(w, "%s: %s\n", sev, d.Summary)
	} else {
		fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, sev, d.Summary)
	}
	if d.Detail != "" {
		fmt.Fprintf(w, "  %s\n", d.Detail)
	}
	if d.Subject != nil {
		if f := files[d.Subject.Filename]; f != nil {
			writeFrame(w, f.Bytes, *d.Subject)
		}
	}
	fmt.Fprintln(w)
}

// writeFrame prints the line before the subject and the subject's lines,
// underlining the subject on its first line.
func writeFrame(w io.Writer, src []byte, rng hcl.Range) {
	first := rng.Start.Line - 1
	if first < 1 {
		first = 1
	}
	last := rng.End.Line
	if last > rng.Start.Line+2 {
		last = rng.Start.Line + 2
	}
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	width := len(fmt.Sprint(last))
	for n := 1; sc.Scan() && n <= last; n++ {
		if n < first {
			continue
		}
		line := strings.ReplaceAll(sc.Text(), "\t", " ")
		fmt.Fprintf(w, "  %*d | %s\n", width, n, line)
		if n == rng.Start.Line {
			start := rng.Start.Column - 1
			end := len(line)
			if rng.End.Line == n {
				end = rng.End.Column - 1
			}
			if start > len(line) {
				start = len(line)
			}
			if end <= start {
				end = start + 1
			}
			fmt.Fprintf(w, "  %*s | %s%s\n", width, "", strings.Repeat(" ", start), strings.Repeat("^", end-start))
		}
	}
}
