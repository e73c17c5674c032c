package variants

import (
	"fmt"
	"strings"
	"testing"
)

// noControl fails when s carries a control character other than newline:
// a variants file must not be able to drive the terminal that prints its
// diagnostics.
func noControl(t *testing.T, s string) {
	t.Helper()
	for i, r := range s {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r < 0xa0) {
			t.Fatalf("output has control character %U at byte %d:\n%q", r, i, s)
		}
	}
}

// A file with thousands of errors prints the first ones and a count.
func TestDiagnosticsCapped(t *testing.T) {
	var b strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&b, "x%d = 1\n", i)
	}
	_, text, diags := load(t, b.String()+cpuVariant+tail, Options{})
	if len(diags) < 10000 {
		t.Fatalf("%d diagnostics, want one per bad line", len(diags))
	}
	if len(text) > 16<<10 {
		t.Errorf("%d bytes of diagnostics for %d errors, want at most 16 KiB", len(text), len(diags))
	}
	if !strings.Contains(text, "and 99") || !strings.Contains(text, "more errors not shown") {
		t.Errorf("no count of the errors left out:\n%s", text[max(0, len(text)-300):])
	}
}

// Control characters (terminal escape sequences) in a frame are escaped,
// and the caret still points at the subject.
func TestFrameEscapesControlCharacters(t *testing.T) {
	src := strings.Replace(cpuVariant, `flavour = "cpu"`, "flavour = \"\x1b]0;pwned\x07\x1b[2Jtpu\"", 1) + tail
	_, text, _ := load(t, src, Options{})
	noControl(t, text)
	frame := `  flavour = "\x1b]0;pwned\x07\x1b[2Jtpu"`
	caret := strings.Repeat(" ", strings.Index(frame, `"`)) + strings.Repeat("^", len(frame)-strings.Index(frame, `"`))
	if want := "  3 | " + frame + "\n    | " + caret + "\n"; !strings.Contains(text, want) {
		t.Errorf("frame not escaped or caret misplaced; want\n%s\nin:\n%s", want, text)
	}
}

// A file name with control characters or a newline prints escaped.
func TestFileNameEscaped(t *testing.T) {
	m, files, diags := Load([]Source{{Name: "a\x1b[2J\nb.hcl", Data: []byte("foo {}\n")}}, Options{LookupEnv: env()})
	if m != nil {
		t.Fatal("want errors")
	}
	text := FormatDiagnostics(files, diags)
	noControl(t, strings.ReplaceAll(text, "\n", ""))
	if !strings.Contains(text, `a\x1b[2J\nb.hcl:1:1: error: Unsupported block type`) {
		t.Errorf("file name not escaped:\n%s", text)
	}
}

// A very long line is cut around the subject, not printed whole.
func TestFrameLongLineTruncated(t *testing.T) {
	long := strings.Repeat("a", 100000)
	src := strings.Replace(cpuVariant, `flavour = "cpu"`, `flavour = "cpu" # `+long+"\n  cuda = \""+long+`"`, 1) + tail
	_, text, diags := load(t, src, Options{})
	if !diags.HasErrors() {
		t.Fatal("want errors")
	}
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 300 {
			t.Fatalf("a %d-byte output line:\n%.400s...", len(line), line)
		}
	}
	if !strings.Contains(text, "  4 |   cuda = \"aaa") || !strings.Contains(text, "…") {
		t.Errorf("frame of the long line missing or not marked as cut:\n%s", text)
	}
}

// A huge Detail (a value echoed by an HCL diagnostic) is cut too.
func TestDetailTruncated(t *testing.T) {
	src := "variable \"X\" {\n  default = \"" + strings.Repeat("b", 100000) + "\"\n  validation {\n    condition = X == \"\"\n    error_message = \"no\"\n  }\n}\n" + cpuVariant + tail
	_, text, diags := load(t, src, Options{})
	if !diags.HasErrors() {
		t.Fatal("want errors")
	}
	if len(text) > 4<<10 {
		t.Errorf("%d bytes of diagnostics:\n%.600s", len(text), text)
	}
}

// The nesting bound leaves room for any expression a person writes.
func TestNestingWithinLimitLoads(t *testing.T) {
	deep := strings.Repeat("(", 40) + `"x"` + strings.Repeat(")", 40)
	var long []string
	for i := range 200 {
		long = append(long, fmt.Sprintf(`"%d" == "a" || "b" != "c" ? "t%d" : "f"`, i, i))
	}
	src := `
variable "DEEP" { default = ` + deep + ` }
variable "LONG" { default = [` + strings.Join(long, ",\n    ") + `] }
variable "TPL" { default = "%{ for x in ["a", "b"] }%{ if x == "a" }${upper(x)}%{ else }${x}%{ endif }%{ endfor }" }
` + strings.Replace(cpuVariant, `["dev-cpu"]`, `concat(["dev-cpu", DEEP, TPL], [for t in LONG : t if t != "f"])`, 1) + tail
	v := mustLoad(t, src, Options{}).Variants[0]
	if len(v.Tags) != 203 {
		t.Fatalf("%d tags: %v", len(v.Tags), v.Tags)
	}
}
