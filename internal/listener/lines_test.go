package listener

import (
	"bufio"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	br := bufio.NewReaderSize(strings.NewReader("a\r\n"+long+"\nb\n\nlast"), 16)
	type line struct {
		head  string
		total int
	}
	want := []line{{"a", 1}, {long[:1000], len(long)}, {"b", 1}, {"", 0}, {"last", 4}}
	for i, w := range want {
		head, total, err := readLine(br, 1000)
		if err != nil || string(head) != w.head || total != w.total {
			t.Errorf("line %d: %.20q (%d bytes) %d, %v; want %.20q %d", i, head, len(head), total, err, w.head, w.total)
		}
	}
	if _, _, err := readLine(br, 1000); err == nil {
		t.Error("no end of input")
	}
}

func TestClipLine(t *testing.T) {
	sec := "ghp_" + strings.Repeat("Z", 96)
	red := &secret.Redactor{}
	red.Add(secret.New(sec))
	cases := []struct {
		name, line string
		limit      int
		want       string // exact, or a prefix when wantCut
		wantCut    bool
	}{
		{"short", "hello " + sec, 100, "hello [redacted]", false},
		{"cut", strings.Repeat("a", 50), 10, strings.Repeat("a", 10) + " [... line truncated: 40 bytes cut]", true},
		{"rune", strings.Repeat("é", 10), 5, "éé [... line truncated: 16 bytes cut]", true},
		// A secret across the cut is redacted before the cut.
		{"secret at the cut", strings.Repeat("a", 95) + sec + strings.Repeat("b", 20), 100, strings.Repeat("a", 95) + "[reda [... line truncated: 25 bytes cut]", true},
	}
	for _, c := range cases {
		got := clipLine(red, []byte(c.line), len(c.line), c.limit)
		if got != c.want && !(c.wantCut && strings.HasPrefix(got, c.want)) || !utf8.ValidString(got) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// Redaction shrinks a long line full of secrets; the unredacted start of a
// secret crossing the end of what was read must not slide into view.
func TestClipLineNeverShowsASecretsStart(t *testing.T) {
	sec := "ghp_" + strings.Repeat("Q", 96)
	red := &secret.Redactor{}
	red.Add(secret.New(sec))
	line := strings.Repeat(sec, 3000) // 300 KB
	limit := 16 << 10
	br := bufio.NewReader(strings.NewReader(line + "\n"))
	head, total, err := readLine(br, limit+redactMargin)
	if err != nil || total != len(line) {
		t.Fatal(total, err)
	}
	got := clipLine(red, head, total, limit)
	if strings.Contains(got, "ghp_") || !strings.Contains(got, "bytes cut") {
		t.Errorf("%.300q", got)
	}
}
