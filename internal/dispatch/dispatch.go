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
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/retry"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// DefaultAPIURL is RunPod's endpoint API.
const DefaultAPIURL = "https://api.runpod.ai/v2"

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
	// TTL bounds how long the job may wait in RunPod's queue.
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
	exec := o.ExecutionTimeout
	if exec == 0 && o.JobTimeout > 0 {
		exec = o.IdleTimeout + o.JobTimeout + 10*time.Minute
	}
	body := jobapi.RunRequest{Input: input, Policy: jobapi.NewPolicy(exec, o.TTL)}
	var j Job
	if err := c.call(ctx, http.MethodPost, "run", body, &j); err != nil {
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
	if err := c.call(ctx, http.MethodGet, "status/"+url.PathEscape(id), nil, &j); err != nil {
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
	if err := c.call(ctx, http.MethodPost, "cancel/"+url.PathEscape(id), nil, &cj); err != nil {
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

func (c *Client) call(ctx context.Context, method, path string, body any, out any) error {
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
	// Transport errors, 429 and 5xx are retried; waits double, no jitter.
	p := retry.Policy{Attempts: attempts, Base: wait, Classify: func(err error, _ int) retry.Verdict {
		var ae *APIError
		var te transportError
		return retry.Verdict{Retry: errors.As(err, &te) || errors.As(err, &ae) && (ae.Status == 429 || ae.Status >= 500)}
	}}
	err := retry.Do(ctx, p, func(int) error { return c.once(ctx, hc, method, u, op, payload, out) })
	if re := (*retry.Error)(nil); errors.As(err, &re) {
		return re.Err
	}
	return err
}

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
	resp, err := hc.Do(req)
	if err != nil {
		// Transport errors carry the URL, never the headers.
		return transportError{fmt.Errorf("RunPod %s: %w", op, err)}
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

// transportError is a request that got no answer: retried.
type transportError struct{ error }

func (e transportError) Unwrap() error { return e.error }

func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
