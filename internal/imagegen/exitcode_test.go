package imagegen

import (
	"errors"
	"strings"
	"testing"
)

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// A failure that is not about flags or arguments exits 1, not 2.
func TestWriteFailureExitsOne(t *testing.T) {
	var stderr strings.Builder
	code := Main([]string{"-f", realFile, "print"}, failingWriter{}, &stderr)
	if code != ExitFailure || strings.Contains(stderr.String(), "--help") {
		t.Fatalf("print to a full disk: exit %d, stderr %q; want 1 without a usage hint", code, stderr.String())
	}
}

// Malformed flag values are usage errors (2).
func TestFlagValueMistakesAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-f", realFile, "--var", "FOO", "print"},
		{"-f", realFile, "--set", "garbage", "print"},
		{"-f", realFile, "--set", "[.base=x", "print"}, // a bad glob
		{"-f", realFile, "build", "--dry-run", "--jobs", "-5"},
		{"runner-bump", "1", "2"},
		{"frobnicate"},
	} {
		code, _, errOut := run(args...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want 2; stderr:\n%s", args, code, errOut)
		}
	}
}

type panickingWriter struct{}

func (panickingWriter) Write([]byte) (int, error) { panic("index out of range [3] with length 3") }

// A crash inside imagegen exits 1 and says it is a bug, with the stack.
func TestPanicIsReportedAsBug(t *testing.T) {
	var stderr strings.Builder
	code := -1
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Main panicked (the process would exit 2, like a usage error): %v", r)
			}
		}()
		code = Main([]string{"-f", realFile, "list"}, panickingWriter{}, &stderr)
	}()
	e := stderr.String()
	if code != ExitFailure || !strings.Contains(e, "bug") || !strings.Contains(e, "index out of range") || !strings.Contains(e, "goroutine") {
		t.Fatalf("exit %d, stderr:\n%s", code, e)
	}
}

// cobra's own commands (help, completion, and the __complete request the
// shell scripts send) work and exit 0.
func TestHelpAndCompletionCommands(t *testing.T) {
	for _, args := range [][]string{
		{"help"},
		{"help", "build"},
		{"completion", "bash"},
		{"__complete", "build", "--c"},
		{"__completeNoDesc", "bu"},
	} {
		code, out, errOut := run(args...)
		if code != ExitOK || out == "" {
			t.Errorf("%q: exit %d, stdout %d bytes; stderr:\n%s", args, code, len(out), errOut)
		}
	}
}
