package listener

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"unicode/utf8"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// eventKind is what a line of the listener's output announces.
type eventKind int

const (
	jobStarted   eventKind = iota + 1 // "Running job: NAME"
	jobCompleted                      // "Job NAME completed with result: RESULT"
)

// event is a job's start or end, as the listener's output tells it.
type event struct {
	kind   eventKind
	job    string
	result string // of a completed job: Succeeded, Failed, Canceled, ...
}

var (
	runningJobRE = regexp.MustCompile(`Running job: (.+?)\s*$`)
	jobDoneRE    = regexp.MustCompile(`Job (.+?) completed with result: (\w+)`)
)

// parseEvent reads the event a line announces, if any.
func parseEvent(line string) (event, bool) {
	if m := jobDoneRE.FindStringSubmatch(line); m != nil {
		return event{kind: jobCompleted, job: m[1], result: m[2]}, true
	}
	if m := runningJobRE.FindStringSubmatch(line); m != nil {
		return event{kind: jobStarted, job: m[1]}, true
	}
	return event{}, false
}

// readLines passes the output's lines, redacted and cut, to OnLine, and
// the events they announce to events, which it closes at the output's end.
func readLines(r io.Reader, cfg *Config, events chan<- event) {
	defer close(events)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		head, total, err := readLine(br, cfg.MaxLine+redactMargin)
		if err != nil {
			break
		}
		line := clipLine(cfg.Redactor, head, total, cfg.MaxLine)
		if cfg.OnLine != nil {
			cfg.OnLine(line)
		}
		if ev, ok := parseEvent(line); ok {
			events <- ev
		}
	}
	io.Copy(io.Discard, r)
}

// redactMargin is read past the cut of a long line, so that a secret that
// crosses the cut (any secret up to this size) is still redacted.
const redactMargin = 64 << 10

// readLine returns the next line without its line ending: at most limit
// bytes of it (head), and its full length. The rest of a longer line is
// read and dropped, so one line never holds more than limit bytes.
func readLine(br *bufio.Reader, limit int) (head []byte, total int, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		total += len(chunk)
		if room := limit - len(head); room > 0 {
			head = append(head, chunk[:min(len(chunk), room)]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && total == 0 {
			return nil, 0, err
		}
		// The line ending is in head unless head was cut first.
		if bytes.HasSuffix(chunk, []byte("\n")) {
			total--
			if bytes.HasSuffix(chunk, []byte("\r\n")) {
				total--
			}
		}
		return head[:min(len(head), total)], total, nil
	}
}

// clipLine redacts a line and cuts it to limit bytes, with a marker saying
// how many bytes were cut. head is the line's start, total its length.
// When head is not the whole line, a secret may cross head's end; its
// unredacted start then lies in the last redactMargin bytes of the
// redacted head, which are never shown.
func clipLine(red *secret.Redactor, head []byte, total, limit int) string {
	s := red.Redact(string(head))
	whole := len(head) == total
	if whole && len(s) <= limit {
		return s
	}
	keep := min(limit, len(s))
	if !whole {
		keep = min(keep, len(s)-redactMargin)
	}
	keep = runeStart(s, keep)
	cut := len(s) - keep + total - len(head)
	return s[:keep] + fmt.Sprintf(" [... line truncated: %d bytes cut]", cut)
}

// runeStart backs n off to the start of a UTF-8 sequence, so a cut never
// splits a character; never below 0.
func runeStart(s string, n int) int {
	if n <= 0 {
		return 0
	}
	if n >= len(s) {
		return len(s)
	}
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n
}
