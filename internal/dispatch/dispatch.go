// Package dispatch starts and stops RunPod jobs of a worker-github_runner
// endpoint from a GitHub workflow, through RunPod's public endpoint API
// (/run, /status/{id}, /cancel/{id}). The composite action calls it as
// `worker dispatch start|stop`, so the logic is tested Go, not shell.
package dispatch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/retry"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// DefaultAPIURL is RunPod's endpoint API.
const DefaultAPIURL = "https://api.runpod.ai/v2"

// RunPod's bounds on a job's policy. MaxTimeout is RunPod's limit on both
// executionTimeout and ttl (7 days). QueueAllowance is how long the
// default ttl lets a job wait in RunPod's queue besides its execution
// timeout: 24 h, as long as GitHub lets a workflow job wait for a
// self-hosted runner.
const (
	MaxTimeout     = 7 * 24 * time.Hour
	QueueAllowance = 24 * time.Hour
)

// Client calls one endpoint.
type Client struct {
	APIURL   string // DefaultAPIURL when empty
	Endpoint string
	APIKey   secret.Value
	HTTP     *http.Client
	// Attempts per call on 429, 5xx and transport errors (default 3), and
	// the first wait between them (default 2 s).
	Attempts int
	Backoff  time.Duration
}

var (
	endpointRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	notAlnumRE = regexp.MustCompile(`[^A-Za-z0-9]`)
)

func (c *Client) check() error {
	if !endpointRE.MatchString(c.Endpoint) {
		return fmt.Errorf("endpoint %q is not a RunPod endpoint id", c.Endpoint)
	}
	if c.APIKey.Empty() {
		return errors.New("no RunPod API key: set RUNPOD_API_KEY (in the action: the api-key input)")
	}
	return nil
}

// StartOptions describe the runner to start.
type StartOptions struct {
	Scope       string // github_org: org, owner/repo, enterprises/slug
	PAT         secret.Value
	Labels      []string
	RunnerGroup string
	APIURL      string // GitHub Enterprise Server API, if any
	RunnerUser  string // "runner" (default) or "root"
	IdleTimeout time.Duration
	JobTimeout  time.Duration
	// ExecutionTimeout bounds the RunPod job (policy.executionTimeout);
	// default: idle + job timeout + 10 minutes.
	ExecutionTimeout time.Duration
	// TTL bounds the job's whole life at RunPod, queue and execution
	// (policy.ttl); RunPod deletes the job when it expires. Default: the
	// execution timeout + QueueAllowance, at most MaxTimeout.
	TTL time.Duration
}

// Input is the job input these options make.
func (o StartOptions) Input() jobapi.Input {
	return jobapi.Input{
		GitHubOrg:    &o.Scope,
		Labels:       jobapi.List(o.Labels),
		GitHubPAT:    jobapi.String(o.PAT.Reveal()),
		RunnerGroup:  jobapi.String(o.RunnerGroup),
		GitHubAPIURL: jobapi.String(o.APIURL),
		RunnerUser:   jobapi.String(o.RunnerUser),
		IdleTimeout:  jobapi.Seconds(o.IdleTimeout),
		JobTimeout:   jobapi.Seconds(o.JobTimeout),
	}
}

// policy is the job's execution timeout (default: idle + job timeout + 10
// minutes) and ttl (default: the execution timeout + QueueAllowance, at
// most MaxTimeout). RunPod's ttl covers the wait in the queue and the run,
// and deletes the job's data when it expires, so it is never shorter than
// the execution timeout.
func (o StartOptions) policy() (exec, ttl time.Duration, err error) {
	exec, ttl = o.ExecutionTimeout, o.TTL
	if exec == 0 && o.JobTimeout > 0 {
		exec = o.IdleTimeout + o.JobTimeout + 10*time.Minute
	}
	if exec > MaxTimeout {
		return 0, 0, fmt.Errorf("execution timeout %v (idle + job timeout + 10m) is over RunPod's limit of %v: shorten the job or idle timeout", exec, MaxTimeout)
	}
	if ttl > MaxTimeout {
		return 0, 0, fmt.Errorf("ttl %v is over RunPod's limit of %v", ttl, MaxTimeout)
	}
	if ttl == 0 && exec > 0 {
		ttl = min(exec+QueueAllowance, MaxTimeout)
	}
	if ttl > 0 && ttl < exec {
		return 0, 0, fmt.Errorf("ttl %v is shorter than the execution timeout %v: RunPod's ttl covers the wait in the queue and the run", ttl, exec)
	}
	return exec, ttl, nil
}

// Job is RunPod's view of a job.
type Job = jobapi.Job

// UniqueLabel makes a label that pins a workflow job to the runner this
// run starts: runpod-<run id>-<attempt>-<random>.
func UniqueLabel(runID, attempt string) string {
	b := make([]byte, 4)
	rand.Read(b)
	parts := []string{"runpod"}
	for _, p := range []string{runID, attempt} {
		if p = notAlnumRE.ReplaceAllString(p, ""); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, hex.EncodeToString(b)), "-")
}

// Start submits a job that registers one runner with opts.Labels.
func (c *Client) Start(ctx context.Context, o StartOptions) (*Job, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if o.Scope == "" {
		return nil, errors.New("no github_org: set the github-org input")
	}
	input, err := json.Marshal(o.Input())
	if err != nil {
		return nil, err
	}
	exec, ttl, err := o.policy()
	if err != nil {
		return nil, err
	}
	body := jobapi.RunRequest{Input: input, Policy: jobapi.NewPolicy(exec, ttl)}
	var j Job
	// /run is not idempotent and RunPod offers no way to look a job up by
	// its input or label: a request that may have reached RunPod is never
	// sent again (see maybeReceived).
	if err := c.call(ctx, http.MethodPost, "run", body, &j, false); err != nil {
		var mr *maybeReceivedError
		if errors.As(err, &mr) {
			return nil, fmt.Errorf("%w; RunPod may have created the job anyway: not sent again, so as not to start "+
				"a second billed runner (if it was created, its runner, labelled %s, gives up after the idle timeout)",
				mr.err, strings.Join(o.Labels, ","))
		}
		return nil, err
	}
	if j.ID == "" {
		return nil, errors.New("RunPod accepted the job but returned no id")
	}
	return &j, nil
}

// Status returns a job's status.
func (c *Client) Status(ctx context.Context, id string) (*Job, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	var j Job
	if err := c.call(ctx, http.MethodGet, "status/"+url.PathEscape(id), nil, &j, true); err != nil {
		return nil, err
	}
	return &j, nil
}

// Stop cancels the job unless it already ended; it returns the job as it
// stands afterwards.
func (c *Client) Stop(ctx context.Context, id string) (*Job, bool, error) {
	j, err := c.Status(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if j.Status.Terminal() {
		return j, false, nil
	}
	var cj Job
	if err := c.call(ctx, http.MethodPost, "cancel/"+url.PathEscape(id), nil, &cj, true); err != nil {
		return j, false, err
	}
	if cj.Status == "" {
		cj.Status = jobapi.Cancelled
	}
	cj.ID = id
	return &cj, true, nil
}

// APIError is a failed call.
type APIError struct {
	Op     string
	Status int
	Msg    string
}

func (e *APIError) Error() string {
	hint := ""
	switch e.Status {
	case 401, 403:
		hint = ": the RunPod API key was rejected (check the api-key secret)"
	case 404:
		hint = ": no such endpoint or job (check the endpoint id)"
	}
	return fmt.Sprintf("RunPod %s: HTTP %d%s %s", e.Op, e.Status, hint, e.Msg)
}

// call makes a request, retrying transport errors, 429 and 5xx. A call
// that is not idempotent is retried only when the request provably did
// not reach RunPod (see maybeReceived); otherwise its error is a
// *maybeReceivedError.
func (c *Client) call(ctx context.Context, method, path string, body any, out any, idempotent bool) error {
	base := strings.TrimRight(c.APIURL, "/")
	if base == "" {
		base = DefaultAPIURL
	}
	u := base + "/" + c.Endpoint + "/" + path
	op := strings.SplitN(path, "/", 2)[0]
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	attempts, wait := c.Attempts, c.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if wait <= 0 {
		wait = 2 * time.Second
	}
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	// Waits double, no jitter.
	p := retry.Policy{Attempts: attempts, Base: wait, Classify: func(err error, _ int) retry.Verdict {
		if !idempotent {
			return retry.Verdict{Retry: notReceived(err)}
		}
		var ae *APIError
		var te transportError
		return retry.Verdict{Retry: errors.As(err, &te) || errors.As(err, &ae) && (ae.Status == 429 || ae.Status >= 500)}
	}}
	err := retry.Do(ctx, p, func(int) error { return c.once(ctx, hc, method, u, op, payload, out) })
	if re := (*retry.Error)(nil); errors.As(err, &re) {
		err = re.Err
	}
	if err != nil && !idempotent && maybeReceived(err) {
		return &maybeReceivedError{err}
	}
	return err
}

// maybeReceived reports whether a failed request may have been acted on:
// true unless it is a 429 (RunPod refused it before processing) or a
// transport error before the request was fully written (a refused
// connection, DNS, TLS). A 4xx other than 429 is a refusal too, but not
// one a retry cures: it is not retried either way.
func maybeReceived(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	var te transportError
	if errors.As(err, &te) {
		return te.sent
	}
	return false
}

// notReceived reports whether a failed request provably never reached
// RunPod, or was refused before processing: a transport error before the
// request was fully written, or a 429.
func notReceived(err error) bool {
	var ae *APIError
	var te transportError
	return errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests || errors.As(err, &te) && !te.sent
}

// maybeReceivedError is a non-idempotent call whose outcome is unknown.
type maybeReceivedError struct{ err error }

func (e *maybeReceivedError) Error() string { return e.err.Error() }
func (e *maybeReceivedError) Unwrap() error { return e.err }

// once makes one request: transport errors and error answers come back
// as errors, an *APIError for an answer.
func (c *Client) once(ctx context.Context, hc *http.Client, method, u, op string, payload []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey.Reveal())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "worker-github_runner-dispatch")
	var sent atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { sent.Store(i.Err == nil) },
	}))
	resp, err := hc.Do(req)
	if err != nil {
		// Transport errors carry the URL, never the headers.
		return transportError{fmt.Errorf("RunPod %s: %w", op, err), sent.Load()}
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return &APIError{op, resp.StatusCode, short(b)}
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("RunPod %s: unexpected answer: %v", op, err)
		}
	}
	return nil
}

// transportError is a request that got no answer; sent: the request was
// fully written, so the server may have acted on it.
type transportError struct {
	error
	sent bool
}

func (e transportError) Unwrap() error { return e.error }

func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
