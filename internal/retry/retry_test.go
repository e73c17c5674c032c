package retry

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeClock fires every timer at once and moves its time on by the wait,
// recording the waits; with hold set, timers never fire.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
	hold  bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Timer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if !c.hold {
		c.now = c.now.Add(d)
		ch <- c.now
	}
	return ch, func() bool { return true }
}

var (
	errTemp = errors.New("temporary")
	errPerm = errors.New("permanent")
	errMine = errors.New("classified")
)

func TestDo(t *testing.T) {
	s := time.Second
	only := func(bad error) func(error, int) Verdict {
		return func(err error, _ int) Verdict { return Verdict{Retry: err != bad} }
	}
	cases := []struct {
		name     string
		p        Policy
		fails    []error       // the attempts' errors, then success
		deadline time.Duration // ctx deadline from the clock's start; 0: none
		cancel   bool          // ctx cancelled before the call
		want     []time.Duration
		attempts int
		err      error  // errors.Is
		reason   Reason // of an *Error, 0: not one
	}{
		{name: "success", p: Policy{Attempts: 3, Base: s}, want: nil, attempts: 1},
		{name: "retried until success", p: Policy{Attempts: 5, Base: s}, fails: []error{errTemp, errTemp}, want: []time.Duration{s, 2 * s}, attempts: 3},
		{name: "exhausted", p: Policy{Attempts: 3, Base: s}, fails: []error{errTemp, errTemp, errTemp, errTemp}, want: []time.Duration{s, 2 * s}, attempts: 3, err: errTemp, reason: Exhausted},
		{name: "capped", p: Policy{Attempts: 5, Base: s, Max: 3 * s}, fails: []error{errTemp, errTemp, errTemp, errTemp}, want: []time.Duration{s, 2 * s, 3 * s, 3 * s}, attempts: 5},
		{name: "not retried", p: Policy{Attempts: 5, Base: s, Classify: only(errPerm)}, fails: []error{errTemp, errPerm}, want: []time.Duration{s}, attempts: 2, err: errPerm},
		{name: "classifier's error", p: Policy{Attempts: 5, Base: s, Classify: func(error, int) Verdict { return Verdict{Err: errMine} }}, fails: []error{errTemp}, attempts: 1, err: errMine},
		{name: "retry after T, not capped", p: Policy{Attempts: 5, Base: s, Max: 2 * s, Classify: func(_ error, n int) Verdict { return Verdict{Retry: true, After: time.Duration(n) * time.Minute} }},
			fails: []error{errTemp, errTemp}, want: []time.Duration{time.Minute, 2 * time.Minute}, attempts: 3},
		{name: "fixed schedule", p: Policy{Waits: []time.Duration{2 * s, 3 * s}}, fails: []error{errTemp, errTemp, errTemp}, want: []time.Duration{2 * s, 3 * s}, attempts: 3, err: errTemp, reason: Exhausted},
		{name: "no bound on attempts", p: Policy{Base: s, Max: s}, fails: []error{errTemp, errTemp, errTemp, errTemp, errTemp, errTemp}, want: []time.Duration{s, s, s, s, s, s}, attempts: 7},
		{name: "no wait past the deadline", p: Policy{Attempts: 9, Base: s, FailPastDeadline: true}, fails: []error{errTemp, errTemp, errTemp, errTemp}, deadline: 5 * s,
			want: []time.Duration{s, 2 * s}, attempts: 3, err: errTemp, reason: NoTime},
		{name: "a deadline alone does not cut waits", p: Policy{Attempts: 9, Base: s}, fails: []error{errTemp, errTemp, errTemp}, deadline: time.Hour, want: []time.Duration{s, 2 * s, 4 * s}, attempts: 4},
		{name: "cancelled: no wait starts", p: Policy{Attempts: 9, Base: s}, fails: []error{errTemp}, cancel: true, attempts: 1, err: errTemp, reason: Cancelled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			clock := &fakeClock{now: start}
			tc.p.Clock = clock
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.deadline > 0 {
				// ctx's deadline is in real time, the clock's start is now.
				ctx, cancel = context.WithDeadline(ctx, start.Add(tc.deadline))
				defer cancel()
			}
			if tc.cancel {
				cancel()
			}
			n := 0
			err := Do(ctx, tc.p, func(attempt int) error {
				n++
				if attempt != n {
					t.Errorf("attempt %d numbered %d", n, attempt)
				}
				if n <= len(tc.fails) {
					return tc.fails[n-1]
				}
				return nil
			})
			if n != tc.attempts {
				t.Errorf("%d attempts, want %d", n, tc.attempts)
			}
			if !reflect.DeepEqual(clock.waits, tc.want) {
				t.Errorf("waits %v, want %v", clock.waits, tc.want)
			}
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("error %v, want %v", err, tc.err)
			}
			var re *Error
			if got := errors.As(err, &re); got != (tc.reason != 0) || got && re.Reason != tc.reason {
				t.Errorf("error %#v, want reason %d", err, tc.reason)
			}
		})
	}
}

// A ctx that ends during a wait ends the wait at once, with its cause.
func TestDoCancelledWhileWaiting(t *testing.T) {
	clock := &fakeClock{now: time.Now(), hold: true}
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("job cancelled")
	p := Policy{Attempts: 5, Base: time.Hour, Clock: clock, OnWait: func(int, time.Duration, error) {
		go cancel(stop)
	}}
	err := Do(ctx, p, func(int) error { return errTemp })
	var re *Error
	if !errors.As(err, &re) || re.Reason != Cancelled || re.Cause != stop || !errors.Is(err, errTemp) || re.Attempts != 1 {
		t.Fatalf("Do: %v, want cancelled by %v after 1 attempt", err, stop)
	}
}

func TestDelayJitter(t *testing.T) {
	cases := []struct {
		draw     func(int64) int64
		failures int
		want     time.Duration
	}{
		{func(int64) int64 { return 0 }, 1, 500 * time.Millisecond},
		{func(n int64) int64 { return n - 1 }, 1, time.Second},
		{func(int64) int64 { return 0 }, 3, 2 * time.Second},
		{func(n int64) int64 { return n - 1 }, 30, 10 * time.Second},
	}
	for _, tc := range cases {
		p := Policy{Base: time.Second, Max: 10 * time.Second, Jitter: true, Rand: tc.draw}
		if got := p.Delay(tc.failures); got != tc.want {
			t.Errorf("Delay(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
	// No overflow, however many failures.
	p := Policy{Base: time.Hour}
	if d := p.Delay(1 << 30); d <= 0 {
		t.Errorf("Delay overflowed: %v", d)
	}
}

// Sleep works on the real clock in a synctest bubble and ends with ctx.
func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(context.Background(), nil, 3*time.Second); err != nil || time.Since(start) != 3*time.Second {
			t.Errorf("Sleep: %v after %v, want nil after 3s", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start = time.Now()
		if err := Sleep(ctx, nil, time.Minute); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Errorf("Sleep: %v after %v, want the deadline after 1s", err, time.Since(start))
		}
		if err := Sleep(ctx, nil, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Sleep on an ended ctx: %v", err)
		}
	})
}
