// Package dispatch starts and stops RunPod jobs of a worker-github_runner
// endpoint from a GitHub workflow, through RunPod's public endpoint API
// (/run, /status/{id}, /cancel/{id}). The composite action calls it as
// `worker dispatch start|stop`, so the logic is tested Go, not shell.
package dispatch

import (
	"bytes"
	"cmp"
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
	// Redactor, when set, is applied to answers before an error quotes
	// them (an answer may echo the request, a job input with a secret;
	// an answer that quotes the request is never shown either).
	Redactor *secret.Redactor
	// UserAgent names the caller (default worker-github_runner-dispatch).
	UserAgent string
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
	// GPU is what the runner's host must have.
	GPU GPUNeeds
}

// GPUNeeds is what a runner's host must have: at least Count GPUs, each
// with at least MinMemoryMiB of memory. They travel as the job input's
// gpu_count and min_gpu_memory_mb; 0 leaves a field out, so the
// endpoint's FITNESS_GPU_COUNT or FITNESS_MIN_GPU_MEMORY_MB applies. A
// worker short of them fails the job as unfit before its runner starts.
type GPUNeeds struct {
	Count        int
	MinMemoryMiB int64
}

// MaxGPUCount and MaxGPUMemoryMiB bound GPUNeeds as the worker does.
const (
	MaxGPUCount     = 64
	MaxGPUMemoryMiB = 1 << 40
)

func (g GPUNeeds) check() error {
	if g.Count < 0 || g.Count > MaxGPUCount {
		return fmt.Errorf("GPU count %d: 0 (the endpoint's setting) to %d", g.Count, MaxGPUCount)
	}
	if g.MinMemoryMiB < 0 || g.MinMemoryMiB > MaxGPUMemoryMiB {
		return fmt.Errorf("minimum GPU memory %d MiB: 0 (the endpoint's setting) to %d", g.MinMemoryMiB, int64(MaxGPUMemoryMiB))
	}
	return nil
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
		GPUCount:     jobapi.Whole(int64(o.GPU.Count)),
		MinGPUMemory: jobapi.Whole(o.GPU.MinMemoryMiB),
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

// Policy is the execution timeout and ttl of a runner's job with these
// idle and job timeouts, as Start derives them: idle + job + 10 minutes,
// and that + QueueAllowance (both at most MaxTimeout).
func Policy(idle, job time.Duration) (exec, ttl time.Duration, err error) {
	return StartOptions{IdleTimeout: idle, JobTimeout: job}.policy()
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

// Start submits a job that registers one runner with opts.Labels, with
// the endpoint's credential or the PAT in opts (the endpoint mode; see
// Launcher for runners minted on the GitHub side).
func (c *Client) Start(ctx context.Context, o StartOptions) (*Job, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if o.Scope == "" {
		return nil, errors.New("no github_org: set the github-org input")
	}
	if err := o.GPU.check(); err != nil {
		return nil, err
	}
	exec, ttl, err := o.policy()
	if err != nil {
		return nil, err
	}
	return c.submit(ctx, o.Input(), exec, ttl, "its runner, labelled "+strings.Join(o.Labels, ",")+", gives up after the idle timeout")
}

// Submit sends /run with in and a policy of exec and ttl (0: RunPod's
// defaults) and returns the new job. /run is not idempotent: a request
// RunPod may have received is never sent again, and its error satisfies
// MaybeCreated; 429s and requests that never left are retried.
func (c *Client) Submit(ctx context.Context, in jobapi.Input, exec, ttl time.Duration) (*Job, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.submit(ctx, in, exec, ttl, "")
}

// MaybeCreated reports whether err is a /run whose outcome is unknown:
// RunPod may have created the job (a 5xx, a lost answer, an answer
// without a job id). Any other error from Submit is a refusal: no job.
func MaybeCreated(err error) bool {
	var mr *maybeReceivedError
	return errors.As(err, &mr)
}

// submit sends /run with input and the policy; ifCreated says, in an
// error saying the job may exist, what becomes of such a job.
func (c *Client) submit(ctx context.Context, in jobapi.Input, exec, ttl time.Duration, ifCreated string) (*Job, error) {
	input, err := json.Marshal(in)
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
			return nil, maybeCreated(mr, ifCreated)
		}
		return nil, err
	}
	if j.ID == "" {
		return nil, maybeCreated(&maybeReceivedError{errors.New("RunPod accepted the job but returned no id")}, ifCreated)
	}
	return &j, nil
}

// maybeCreated explains mr; ifCreated ("" : nothing) says what becomes of
// a job RunPod created all the same.
func maybeCreated(mr *maybeReceivedError, ifCreated string) error {
	if ifCreated != "" {
		ifCreated = " (if it was created, " + ifCreated + ")"
	}
	return &maybeReceivedError{fmt.Errorf("%w; RunPod may have created the job anyway: not sent again, so as not to start "+
		"a second billed runner%s", mr.err, ifCreated)}
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

// StopResult is what Stop did to a job.
type StopResult struct {
	Job       *Job // as it stands afterwards (nil when Gone)
	Cancelled bool // Stop cancelled it
	// Gone: RunPod no longer knows the job (it ended and RunPod dropped
	// it after its ttl) while the endpoint answers: nothing to cancel.
	Gone bool
}

// Stop cancels the job unless it already ended or RunPod forgot it.
func (c *Client) Stop(ctx context.Context, id string) (StopResult, error) {
	j, err := c.Status(ctx, id)
	if NotFound(err) {
		return c.gone(ctx, err)
	}
	if err != nil {
		return StopResult{}, err
	}
	if j.Status.Terminal() {
		return StopResult{Job: j}, nil
	}
	var cj Job
	err = c.call(ctx, http.MethodPost, "cancel/"+url.PathEscape(id), nil, &cj, true)
	if NotFound(err) {
		return c.gone(ctx, err)
	}
	if err != nil {
		return StopResult{Job: j}, err
	}
	if cj.Status == "" {
		cj.Status = jobapi.Cancelled
	}
	cj.ID = id
	return StopResult{Job: &cj, Cancelled: true}, nil
}

// gone tells a job RunPod forgot from an endpoint that does not exist
// (both answer 404): the endpoint's /health must answer.
func (c *Client) gone(ctx context.Context, notFoundErr error) (StopResult, error) {
	if _, err := c.Health(ctx); err != nil {
		return StopResult{}, fmt.Errorf("%w (and /health failed too: %v)", notFoundErr, err)
	}
	return StopResult{Gone: true}, nil
}

// Health is the endpoint's /health: its jobs and workers.
func (c *Client) Health(ctx context.Context) (*jobapi.Health, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	var h jobapi.Health
	if err := c.call(ctx, http.MethodGet, "health", nil, &h, true); err != nil {
		return nil, err
	}
	return &h, nil
}

// NotFound reports whether err is RunPod's 404: no such job (it ended
// and RunPod dropped it) or no such endpoint.
func NotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
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
	req.Header.Set("User-Agent", cmp.Or(c.UserAgent, "worker-github_runner-dispatch"))
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
		msg := string(b)
		if c.Redactor != nil {
			msg = c.Redactor.Redact(msg)
		}
		msg = short([]byte(msg))
		if quotes(b, payload) {
			msg = "(the answer quotes the request, which holds a secret: not shown)"
		}
		return &APIError{op, resp.StatusCode, msg}
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

// quotes reports whether answer holds any 32-byte piece of request.
func quotes(answer, request []byte) bool {
	for i := 0; i+32 <= len(request); i += 16 {
		if bytes.Contains(answer, request[i:i+32]) {
			return true
		}
	}
	return false
}

func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
