// Package retry is the one way this module retries: a Policy (how many
// attempts, exponential backoff with jitter and a cap or a fixed schedule,
// and a classifier that says whether a failure is retried and may ask for
// a given wait, "retry after T"), a ctx-aware Sleep and an injectable
// Clock. Packages keep their own policies (RunPod SDK parity, GitHub's
// rate limits); the loop is written once, here.
package retry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Clock is the time source. Real uses package time, which a
// testing/synctest bubble makes fake; other clocks are for unit tests.
type Clock interface {
	Now() time.Time
	// Timer returns a channel that receives once d has passed, and a
	// function that stops it.
	Timer(d time.Duration) (<-chan time.Time, func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Timer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Real is the clock of package time.
var Real Clock = realClock{}

// Sleep waits d on clock c (nil: Real), unless ctx ends first: then it
// returns ctx's cause at once.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if c == nil {
		c = Real
	}
	ch, stop := c.Timer(max(d, 0))
	defer stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-ch:
		return nil
	}
}

// Verdict is what a classifier says of a failed attempt.
type Verdict struct {
	// Retry makes another attempt (if the policy allows one).
	Retry bool
	// After, when positive, is the wait the other side asked for
	// (Retry-After, a rate limit's reset): it replaces the backoff and is
	// not capped by Policy.Max.
	After time.Duration
	// Err, when set, replaces the attempt's error in what Do returns.
	Err error
}

// Policy is how a call is retried. The zero Policy retries every error
// at once and forever; set at least Attempts or Base.
type Policy struct {
	// Attempts bounds the attempts, the first one included; 0 is no
	// bound (until ctx ends), or len(Waits)+1 when Waits is set.
	Attempts int
	// Base is the first backoff; each next one doubles, up to Max when
	// Max is positive.
	Base, Max time.Duration
	// Jitter draws each backoff d from [d/2, d] (waits the other side
	// asked for are exact).
	Jitter bool
	// Waits is a fixed schedule used instead of Base and Max: the wait
	// before retry n is Waits[n-1] (the last one repeats).
	Waits []time.Duration
	// Classify says whether an attempt's error is retried; nil retries
	// every error. attempt counts from 1.
	Classify func(err error, attempt int) Verdict
	// FailPastDeadline ends the call at once, instead of waiting, when
	// the wait would end after ctx's deadline.
	FailPastDeadline bool
	// OnWait is told each wait before it starts (to log it).
	OnWait func(attempt int, wait time.Duration, err error)
	// Clock is the time source (nil: Real); Rand(n) draws from [0, n)
	// for the jitter (nil: math/rand/v2).
	Clock Clock
	Rand  func(n int64) int64
}

// Reason says why Do stopped retrying an error it would have retried.
type Reason int

// Reasons.
const (
	// Exhausted: the last allowed attempt failed.
	Exhausted Reason = iota + 1
	// Cancelled: ctx ended before the next attempt.
	Cancelled
	// NoTime: the wait would run past ctx's deadline (FailPastDeadline).
	NoTime
)

// Error is a retryable failure that Do gave up on. It unwraps to the last
// attempt's error.
type Error struct {
	Reason   Reason
	Attempts int           // attempts made
	Wait     time.Duration // the wait that did not fit (NoTime)
	Cause    error         // ctx's cause (Cancelled)
	Err      error         // the last attempt's error
}

func (e *Error) Error() string {
	switch e.Reason {
	case Cancelled:
		return fmt.Sprintf("%v (last error: %v)", e.Cause, e.Err)
	case NoTime:
		return fmt.Sprintf("no time left to wait %v for another attempt: %v", e.Wait, e.Err)
	}
	return fmt.Sprintf("giving up after %d attempts: %v", e.Attempts, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func (p Policy) attempts() int {
	if p.Attempts == 0 && len(p.Waits) > 0 {
		return len(p.Waits) + 1
	}
	return p.Attempts
}

// Delay is the backoff before the next attempt after failures failed
// ones (from 1): Waits' entry, or Base doubled failures-1 times, capped
// by Max, with the policy's jitter.
func (p Policy) Delay(failures int) time.Duration {
	failures = max(failures, 1)
	if len(p.Waits) > 0 {
		return p.Waits[min(failures, len(p.Waits))-1]
	}
	d := p.Base
	for i := 1; i < failures && i < 64 && d < 1<<61; i++ {
		d *= 2
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	if !p.Jitter || d <= 1 {
		return d
	}
	draw := p.Rand
	if draw == nil {
		draw = rand.Int64N
	}
	return d/2 + time.Duration(draw(int64(d/2)+1))
}

// Do calls f (with the attempt's number, from 1) until it succeeds, its
// error is not retried (Do returns it, or the Verdict's Err), the
// attempts are used up, or ctx ends; the last two give an *Error. No
// wait runs past ctx's end, and none starts once ctx has ended.
func Do(ctx context.Context, p Policy, f func(attempt int) error) error {
	clock := p.Clock
	if clock == nil {
		clock = Real
	}
	for attempt := 1; ; attempt++ {
		err := f(attempt)
		if err == nil {
			return nil
		}
		v := Verdict{Retry: true}
		if p.Classify != nil {
			v = p.Classify(err, attempt)
		}
		if v.Err != nil {
			err = v.Err
		}
		if !v.Retry {
			return err
		}
		if n := p.attempts(); n > 0 && attempt >= n {
			return &Error{Reason: Exhausted, Attempts: attempt, Err: err}
		}
		wait := v.After
		if wait <= 0 {
			wait = p.Delay(attempt)
		}
		if ctx.Err() != nil {
			return &Error{Reason: Cancelled, Attempts: attempt, Cause: context.Cause(ctx), Err: err}
		}
		if dl, ok := ctx.Deadline(); ok && p.FailPastDeadline && clock.Now().Add(wait).After(dl) {
			return &Error{Reason: NoTime, Attempts: attempt, Wait: wait, Err: err}
		}
		if p.OnWait != nil {
			p.OnWait(attempt, wait, err)
		}
		if cause := Sleep(ctx, clock, wait); cause != nil {
			return &Error{Reason: Cancelled, Attempts: attempt, Cause: cause, Err: err}
		}
	}
}
