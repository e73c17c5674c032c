package github

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v66/github"

	"github.com/runpod-workers/worker-github_runner/internal/retry"
)

// GitHub's retry policy, for the client's calls and for minting
// installation tokens: transport errors and 5xx are retried with
// exponential backoff (jittered, capped); a rate limit (403 or 429) waits
// what GitHub asks: Retry-After, else X-RateLimit-Reset when
// X-RateLimit-Remaining is 0, else (a secondary limit that says neither)
// at least a minute, doubling with each one the call meets, as GitHub
// documents. Waits are logged; none runs past ctx's deadline or
// the client's MaxRateLimitWait. Everything else fails at once.

// policyOptions are the knobs of one call's policy.
type policyOptions struct {
	op              string
	attempts        int
	backoff, max    time.Duration
	failOnRateLimit bool
	maxRateLimit    time.Duration // the longest rate-limit wait
	log             *slog.Logger
	// refused is the error for an answer that is not retried.
	refused func(status int, err error) error
}

// attemptState is what the policy knows of a call: its last attempt's
// answer and the rate limits met.
type attemptState struct {
	status      int
	header      http.Header
	msg         string // the answer's message
	err         error
	cutoff      context.Context // WithRetryCutoff's, or nil
	rateLimited bool            // the wait ahead is one GitHub asked for
	secondary   int             // secondary limits met without a wait given
}

// observe records a go-github answer.
func (st *attemptState) observe(resp *gh.Response, err error) {
	st.status, st.header, st.msg, st.err = 0, nil, "", err
	if resp != nil && resp.Response != nil {
		st.status, st.header = resp.StatusCode, resp.Header
	}
	if er := (*gh.ErrorResponse)(nil); errors.As(err, &er) {
		st.msg = er.Message
	}
}

func (o policyOptions) policy(st *attemptState) retry.Policy {
	return retry.Policy{
		Attempts: o.attempts, Base: o.backoff, Max: o.max, Jitter: true, FailPastDeadline: true,
		Classify: func(error, int) retry.Verdict { return o.classify(st) },
		OnWait: func(_ int, wait time.Duration, _ error) {
			if st.rateLimited {
				o.log.Warn("GitHub rate limit: waiting before retrying", "op", o.op, "status", st.status, "retry_in", wait)
			}
		},
	}
}

// do runs f, which records each attempt in st, with the policy.
func (o policyOptions) do(ctx context.Context, st *attemptState, f func() error) error {
	waitCtx := ctx
	if cut, ok := ctx.Value(retryCutoffKey{}).(context.Context); ok {
		st.cutoff = cut
		// Waits end when the cutoff does; attempts in flight go on.
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(cut, cancel)()
	}
	return o.final(ctx, st, retry.Do(waitCtx, o.policy(st), func(int) error { return f() }))
}

func (o policyOptions) classify(st *attemptState) retry.Verdict {
	st.rateLimited = false
	if te := (*tokenError)(nil); errors.As(st.err, &te) {
		return retry.Verdict{Err: te.err} // not sent; minting was retried
	}
	if wait, limited := st.rateLimitWait(); limited {
		switch {
		case o.failOnRateLimit:
			return retry.Verdict{Err: &APIError{Op: o.op, Status: st.status, Err: fmt.Errorf("rate limited, not waiting: %w", st.err)}}
		case wait > o.maxRateLimit:
			return retry.Verdict{Err: &APIError{Op: o.op, Status: st.status, Err: fmt.Errorf("GitHub's rate limit asks to wait %v, longer than %v: %w", wait.Round(time.Second), o.maxRateLimit, st.err),
				Hint: "use a GitHub App or another token for this endpoint"}}
		}
		st.rateLimited = true
		return o.retry(st, wait)
	}
	if st.status == 0 || st.status >= 500 {
		return o.retry(st, 0)
	}
	return retry.Verdict{Err: o.refused(st.status, st.err)}
}

// retry retries after wait (0: the backoff), unless the retry cutoff is
// done.
func (o policyOptions) retry(st *attemptState, wait time.Duration) retry.Verdict {
	if st.cutoff != nil && st.cutoff.Err() != nil {
		return retry.Verdict{Err: &APIError{Op: o.op, Status: st.status, Err: fmt.Errorf("not retried, the job is cancelled: %w", st.err)}}
	}
	return retry.Verdict{Retry: true, After: wait}
}

// rateLimitWait says whether the answer is a rate limit, or one with a
// Retry-After (honoured for 5xx too), and how long GitHub asks to wait.
func (st *attemptState) rateLimitWait() (time.Duration, bool) {
	var rl *gh.RateLimitError
	var abuse *gh.AbuseRateLimitError
	primary, secondary := errors.As(st.err, &rl), errors.As(st.err, &abuse)
	after, hasAfter := retryAfterHeader(st.header)
	if !hasAfter && secondary && abuse.RetryAfter != nil {
		after, hasAfter = *abuse.RetryAfter, true
	}
	reset, exhausted := resetOf(st.header)
	if primary {
		reset, exhausted = rl.Rate.Reset.Time, true
	}
	limited := primary || secondary || st.status == http.StatusTooManyRequests ||
		st.status == http.StatusForbidden && (hasAfter || exhausted || strings.Contains(strings.ToLower(st.msg), "rate limit"))
	switch {
	case hasAfter && (limited || st.status >= 500):
		return after, true
	case !limited:
		return 0, false
	case exhausted:
		// The reset has whole-second precision: a second more.
		return max(time.Until(reset), 0) + time.Second, true
	}
	st.secondary++
	return time.Minute << min(st.secondary-1, 16), true
}

// retryAfterHeader reads Retry-After: seconds or an HTTP date.
func retryAfterHeader(h http.Header) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.Duration(min(n, 1<<31)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// resetOf reads X-RateLimit-Reset when X-RateLimit-Remaining is 0.
func resetOf(h http.Header) (time.Time, bool) {
	if strings.TrimSpace(h.Get("X-RateLimit-Remaining")) != "0" {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// final turns the retry package's verdicts into the call's error.
func (o policyOptions) final(ctx context.Context, st *attemptState, err error) error {
	var re *retry.Error
	if !errors.As(err, &re) {
		return err
	}
	var why error
	switch {
	case re.Reason == retry.Exhausted:
		why = fmt.Errorf("giving up after %d attempts: %w", re.Attempts, re.Err)
	case re.Reason == retry.NoTime && st.rateLimited:
		why = fmt.Errorf("no time left for the %v GitHub's rate limit asks to wait: %w", re.Wait.Round(time.Second), re.Err)
	case re.Reason == retry.NoTime:
		why = fmt.Errorf("no time left for another attempt: %w", re.Err)
	case ctx.Err() == nil:
		// The waits' ctx ended, not the call's: the retry cutoff.
		why = fmt.Errorf("not retried, the job is cancelled: %w", re.Err)
	default:
		why = fmt.Errorf("%w (last error: %v)", ctx.Err(), re.Err)
	}
	return &APIError{Op: o.op, Status: st.status, Err: why}
}

// policy is the client's policy for op.
func (c *Client) policy(op string) policyOptions {
	return policyOptions{op: op, attempts: c.Attempts, backoff: c.Backoff, max: c.MaxWait, failOnRateLimit: c.FailOnRateLimit,
		maxRateLimit: c.MaxRateLimitWait, log: c.log,
		refused: func(status int, err error) error { return c.refuse(op, status, err) }}
}

// runnerBusy reports whether err is DELETE's 422 for a runner still
// running a job (not another validation failure).
func runnerBusy(err error) bool {
	var ae *APIError
	var er *gh.ErrorResponse
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || !errors.As(err, &er) {
		return false
	}
	m := strings.ToLower(er.Message)
	return strings.Contains(m, "still running a job") || strings.Contains(m, "busy")
}
