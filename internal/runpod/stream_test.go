package runpod

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func floodHandler(n, width int) Handler {
	return HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		for i := range n {
			u.Stream(floodLine(i, width))
		}
		return "flooded", nil
	})
}

func floodLine(i, width int) string {
	s := fmt.Sprintf("line %06d ", i)
	return s + strings.Repeat("x", max(width-len(s), 0))
}

// droppedRE reads the marker the worker streams in place of chunks it had
// to drop.
var droppedRE = regexp.MustCompile(`(\d+) stream chunks? dropped`)

// streamed splits what reached the platform into the job's lines, checked
// to be in order, and the number of lines the markers say were dropped.
func streamed(t *testing.T, items []any, width int) (lines, dropped int) {
	t.Helper()
	next := 0
	for _, it := range items {
		s, _ := it.(string)
		if m := droppedRE.FindStringSubmatch(s); m != nil && !strings.HasPrefix(s, "line ") {
			n, _ := strconv.Atoi(m[1])
			dropped += n
			continue
		}
		var i int
		if _, err := fmt.Sscanf(s, "line %06d ", &i); err != nil || s != floodLine(i, width) || i < next {
			t.Fatalf("stream item %d: %.60q (after line %d)", lines, s, next-1)
		}
		next = i + 1
		lines++
	}
	return lines, dropped
}

// A flood of lines reaches the platform whole, in order, in few posts.
func TestStreamFloodBatched(t *testing.T) {
	const n, width = 20000, 80
	wall := time.Now()
	var posts int
	var took time.Duration
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, floodHandler(n, width), nil)
		start := time.Now()
		h.p.AddJob("flood", 1)
		post := final(t, h.p, "flood")
		took = time.Since(start)
		if post.Body["output"] != "flooded" || !strings.Contains(post.Query, "isStream=true") {
			t.Errorf("final post %v %q", post.Body, post.Query)
		}
		lines, dropped := streamed(t, h.p.StreamItems(), width)
		if lines != n || dropped != 0 {
			t.Errorf("%d of %d lines reached the platform, %d reported dropped", lines, n, dropped)
		}
		posts = len(h.p.Streams())
		for _, s := range h.p.Streams() {
			if len(s.RawBody) > 70<<10 {
				t.Errorf("a stream post of %d bytes", len(s.RawBody))
			}
			if s.At.After(post.At) {
				t.Error("a stream post after the final result")
			}
		}
		if posts > n/100 {
			t.Errorf("%d stream posts for %d lines: not batched", posts, n)
		}
	})
	t.Logf("%d lines of %d bytes: %d stream posts (%.0f lines a post); result %v after the job started (fake time), test %v wall", n, width, posts, float64(n)/float64(max(posts, 1)), took, time.Since(wall).Round(time.Millisecond))
}

// A trickle of lines is posted within the flush interval, not held back
// until the job ends.
func TestStreamFlushedByTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			u.Stream("first")
			<-time.After(300 * time.Millisecond)
			u.Stream("second")
			<-release
			return "ok", nil
		}), nil)
		h.p.AddJob("slow", 1)
		advance(1500 * time.Millisecond)
		if items := h.p.StreamItems(); len(items) != 2 || items[0] != "first" || items[1] != "second" {
			t.Errorf("after 1.5 s the stream has %v", items)
		}
		if n := len(h.p.Streams()); n != 1 {
			t.Errorf("%d posts for two lines 300 ms apart", n)
		}
		close(release)
		final(t, h.p, "slow")
	})
}

// When the platform cannot keep up, chunks are dropped, and every drop is
// counted in the stream and in the log: nothing goes silently.
func TestStreamDropsAreReported(t *testing.T) {
	const n, width = 20000, 1024
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, floodHandler(n, width), nil)
		h.p.StreamDelay = 200 * time.Millisecond
		start := time.Now()
		h.p.AddJob("slowplatform", 1)
		if _, err := h.p.WaitFinal("slowplatform", time.Minute); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		lines, dropped := streamed(t, h.p.StreamItems(), width)
		if lines+dropped != n || dropped == 0 {
			t.Errorf("%d lines streamed + %d reported dropped, want %d with some dropped", lines, dropped, n)
		}
		logs := h.logs.String()
		if !strings.Contains(logs, "stream chunks dropped") || !strings.Contains(logs, fmt.Sprintf(`"dropped_total":%d`, dropped)) {
			t.Errorf("the log does not count the %d dropped chunks:\n%.2000s", dropped, logs)
		}
		// The stream drains for at most 10 s after the job; then the
		// result goes.
		if took > 15*time.Second {
			t.Errorf("the result waited %v for the stream to drain", took)
		}
		t.Logf("slow platform (200 ms a post): %d lines streamed in %d posts, %d dropped and reported; result after %v (fake time)", lines, len(h.p.Streams()), dropped, took)
	})
}

// A stream post that hangs never holds the result back for more than the
// drain time (and a few seconds for the last marker); the lost chunk is
// logged.
func TestHangingStreamDoesNotHoldTheResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startInBubble(t, HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			u.Stream("one line")
			<-time.After(2 * time.Second) // the line's post is in flight, hanging
			return "ok", nil
		}), nil)
		h.p.StreamDelay = time.Hour
		start := time.Now()
		h.p.AddJob("hang", 1)
		if _, err := h.p.WaitFinal("hang", 5*time.Minute); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("the result came %v after the job started", took)
		}
		if !strings.Contains(h.logs.String(), `"dropped_total":1`) {
			t.Errorf("the lost line is not logged:\n%s", h.logs.String())
		}
	})
}
