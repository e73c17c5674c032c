// Package github registers and removes self-hosted runners through GitHub's
// REST API (go-github v66), for an organisation, a repository or an
// enterprise, on github.com or GitHub Enterprise Server. Calls are retried
// on server errors and rate limits; auth and permission failures fail fast
// with a message that names the missing permission.
package github

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v66/github"

	"github.com/runpod-workers/worker-github_runner/internal/retry"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Client calls GitHub for one scope (or, minting a token, for an app).
type Client struct {
	gh     *gh.Client
	scope  Scope
	api    scopeAPI // the scope's endpoints
	web    string
	log    *slog.Logger
	refuse func(op string, status int, err error) error // the error for an answer not retried
	// Attempts bounds retries of one call (default 5); Backoff is the first
	// wait (default 1 s) and MaxWait the longest (default 60 s).
	Attempts int
	Backoff  time.Duration
	MaxWait  time.Duration
	// MaxRateLimitWait is the longest a call waits for a rate limit to
	// reset before it fails (default 5 min).
	MaxRateLimitWait time.Duration
	// FailOnRateLimit makes a rate-limited call fail at once instead of
	// waiting (work that can wait for a later worker: the sweep).
	FailOnRateLimit bool

	rateMu sync.Mutex
	rate   gh.Rate // the last answer's rate limit
}

// RateLeft is what the last answer said of the rate limit: requests left
// and the limit; known is false when GitHub sent no rate-limit headers.
func (c *Client) RateLeft() (remaining, limit int, known bool) {
	c.rateMu.Lock()
	defer c.rateMu.Unlock()
	return c.rate.Remaining, c.rate.Limit, c.rate.Limit > 0
}

// Options configure NewClient and InstallationToken.
type Options struct {
	// APIURL is https://api.github.com (default), GHE.com's
	// https://api.<sub>.ghe.com or a GitHub Enterprise Server's
	// https://<host>/api/v3/ (see CanonicalAPIURL).
	APIURL string
	Token  secret.Value
	HTTP   *http.Client
	// Log receives what the client waits for (rate limits); nil: nothing.
	Log *slog.Logger
	// FailOnRateLimit makes the client's calls, and minting an app's
	// tokens, fail at once on a rate limit (see Client.FailOnRateLimit).
	FailOnRateLimit bool
	// TestOnlyAllowLoopbackHTTP lets credentials go over plain http to
	// 127.0.0.1, ::1 or localhost, for tests against a fake GitHub. Never
	// set it in production: credentials travel over https only.
	TestOnlyAllowLoopbackHTTP bool
}

// DefaultAPIURL is github.com's API.
const DefaultAPIURL = "https://api.github.com/"

// CanonicalAPIURL checks a GitHub API URL and returns the base requests go
// to: DefaultAPIURL for "" and github.com, https://api.<sub>.ghe.com/ for
// GHE.com with data residency (<sub>.ghe.com or api.<sub>.ghe.com), else
// https://<host>/.../api/v3/ (GitHub Enterprise Server). Credentials are sent to it, so it must be
// https (see Options.TestOnlyAllowLoopbackHTTP) without user info. Errors
// never echo the URL, which may hold a password.
func CanonicalAPIURL(raw string, allowLoopbackHTTP bool) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return DefaultAPIURL, nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("github_api_url must be an https URL like https://github.example.com/api/v3/ (credentials are sent to it): %s", why)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return bad("it is not an absolute URL")
	case u.User != nil:
		return bad("it carries a user name or password")
	case u.RawQuery != "" || u.Fragment != "":
		return bad("it has a query or fragment")
	case u.Scheme == "https":
	case u.Scheme == "http" && allowLoopbackHTTP && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return bad("plain http would send the credential in clear text")
	default:
		return bad("the scheme is not https")
	}
	host := strings.ToLower(u.Host)
	if host == "api.github.com" || host == "github.com" {
		if strings.Trim(u.Path, "/") != "" {
			return bad("github.com's API has no path")
		}
		return DefaultAPIURL, nil
	}
	if sub, ok := gheSubdomain(host); ok {
		if strings.Trim(u.Path, "/") != "" {
			return bad("a GHE.com API (https://api.<subdomain>.ghe.com) has no path")
		}
		return "https://api." + sub + ".ghe.com/", nil
	}
	if host == "ghe.com" || strings.HasSuffix(host, ".ghe.com") {
		return bad("a GHE.com API is https://api.<subdomain>.ghe.com")
	}
	path := u.Path
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	// GitHub Enterprise Server's API lives under /api/v3/ (without it: 406).
	if !strings.HasSuffix(path, "/api/v3/") {
		path += "api/v3/"
	}
	return u.Scheme + "://" + host + path, nil
}

// gheSubdomain reads GitHub Enterprise Cloud with data residency's host,
// <sub>.ghe.com (the web) or api.<sub>.ghe.com (the API), and returns
// <sub>.
func gheSubdomain(host string) (string, bool) {
	rest, ok := strings.CutSuffix(host, ".ghe.com")
	rest = strings.TrimPrefix(rest, "api.")
	if !ok || !ownerRE.MatchString(rest) {
		return "", false
	}
	return strings.ToLower(rest), true
}

// ServerURL is the web address of the GitHub an API URL (as
// CanonicalAPIURL returns it) belongs to: the runner registers with it.
// github.com's API is api.github.com, GHE.com's api.<sub>.ghe.com, and
// GitHub Enterprise Server's https://<host>/api/v3/.
func ServerURL(api string) string {
	if api == DefaultAPIURL {
		return "https://github.com"
	}
	u, err := url.Parse(api)
	if err != nil {
		return ""
	}
	if sub, ok := gheSubdomain(u.Host); ok {
		return "https://" + sub + ".ghe.com"
	}
	return u.Scheme + "://" + u.Host
}

func isLoopback(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// httpClient is o.HTTP (default: a 60 s timeout) made to refuse redirects
// that would take the credential to plain http or to another host.
func (o Options) httpClient() *http.Client {
	hc := &http.Client{Timeout: 60 * time.Second}
	if o.HTTP != nil {
		c := *o.HTTP
		hc = &c
	}
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		switch {
		case len(via) >= 5:
			return errors.New("stopped after 5 redirects")
		case req.URL.Host != via[0].URL.Host:
			return errors.New("refused a redirect to another host: it would receive the credential")
		case req.URL.Scheme != "https" && !(o.TestOnlyAllowLoopbackHTTP && isLoopback(req.URL.Hostname())):
			return errors.New("refused a redirect to plain http: it would send the credential in clear text")
		}
		return nil
	}
	return hc
}

// NewClient makes a client for scope.
func NewClient(scope Scope, o Options) (*Client, error) {
	if o.Token.Empty() {
		return nil, errors.New("no GitHub credential: set github_pat in the job input or GITHUB_PAT in the endpoint's environment")
	}
	tok := o.Token.Reveal()
	return newScopeClient(scope, o, func(context.Context) (string, error) { return tok, nil })
}

// newScopeClient is a client for scope that sends token's credential.
func newScopeClient(scope Scope, o Options, token func(context.Context) (string, error)) (*Client, error) {
	hc := o.httpClient()
	hc.Transport = bearer{base: hc.Transport, token: token}
	c, err := newClient(o, hc)
	if err != nil {
		return nil, err
	}
	c.scope, c.api, c.refuse = scope, apiFor(scope, c.gh), scope.refusal
	return c, nil
}

// newClient is a client of o.APIURL's API (CanonicalAPIURL is the one
// rule for it) over hc, which authenticates.
func newClient(o Options, hc *http.Client) (*Client, error) {
	api, err := CanonicalAPIURL(o.APIURL, o.TestOnlyAllowLoopbackHTTP)
	if err != nil {
		return nil, err
	}
	g := gh.NewClient(hc)
	if g.BaseURL, err = url.Parse(api); err != nil {
		return nil, fmt.Errorf("github_api_url: %w", err)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{gh: g, web: ServerURL(api), log: log, Attempts: 5, Backoff: time.Second, MaxWait: 60 * time.Second, MaxRateLimitWait: 5 * time.Minute,
		FailOnRateLimit: o.FailOnRateLimit}, nil
}

// maxAnswer bounds what is read of one answer of GitHub's.
const maxAnswer = 8 << 20

// bearer sends each request with Authorization: Bearer token(its ctx) and reads
// at most maxAnswer bytes of the answer.
type bearer struct {
	base  http.RoundTripper // nil: http.DefaultTransport
	token func(context.Context) (string, error)
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := b.token(r.Context())
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	base := b.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err == nil {
		resp.Body = &cappedBody{ReadCloser: resp.Body, left: maxAnswer}
	}
	return resp, err
}

// cappedBody fails a read once maxAnswer bytes are read.
type cappedBody struct {
	io.ReadCloser
	left int
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("GitHub's answer is longer than %d MiB", maxAnswer>>20)
	}
	n, err := b.ReadCloser.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

// RunnerURL is the URL config.sh and the runner use for the scope.
func (c *Client) RunnerURL() string { return c.web + "/" + c.scope.String() }

// RegisteredRunner is a registered runner as GitHub reports it.
type RegisteredRunner struct {
	ID     int64
	Name   string
	Status string // online, offline
	Busy   bool
	Labels []string
}

// APIError is a failed call, classified.
type APIError struct {
	Op     string
	Status int
	Err    error
	Hint   string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s: %v", e.Op, e.Err)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *APIError) Unwrap() error { return e.Err }

type retryCutoffKey struct{}

// WithRetryCutoff marks ctx for a call that must not be cut off in flight
// (a registration GitHub may complete anyway, so the worker needs its
// answer) but must not start another attempt once cutoff is done.
func WithRetryCutoff(ctx, cutoff context.Context) context.Context {
	return context.WithValue(ctx, retryCutoffKey{}, cutoff)
}

// Uncertain reports whether a failed call may have taken effect at GitHub
// all the same: its answer was lost (a transport error, a timeout, a 5xx,
// time running out). A 409 is not: the object exists, made by someone
// else (JITConfig itself removes its own when a retry after a lost answer
// meets it).
func Uncertain(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return err != nil
	}
	return ae.Status == 0 || ae.Status >= 500
}

// call runs one API operation with GitHub's retry policy (see policy):
// server errors, rate limits and transport errors are retried; 401, 403
// and 404 fail at once with what permission is missing. No wait runs past
// ctx's deadline: when the next attempt cannot happen in time, call
// returns the last error at once.
func (c *Client) call(ctx context.Context, op string, f func() (*gh.Response, error)) error {
	st := &attemptState{}
	return c.policy(op).do(ctx, st, func() error {
		resp, err := f()
		if resp != nil && resp.Rate.Limit > 0 {
			c.rateMu.Lock()
			c.rate = resp.Rate
			c.rateMu.Unlock()
		}
		st.observe(resp, err)
		return err
	})
}

// callFor runs call with f and returns f's value and answer.
func callFor[T any](ctx context.Context, c *Client, op string, f func() (T, *gh.Response, error)) (T, *gh.Response, error) {
	var v T
	var resp *gh.Response
	err := c.call(ctx, op, func() (*gh.Response, error) {
		var err error
		v, resp, err = f()
		return resp, err
	})
	return v, resp, err
}

// RunnerGroupID resolves a runner group name to its id. An empty name or
// "Default" is group 1. Repositories have no runner groups.
func (c *Client) RunnerGroupID(ctx context.Context, name string) (int64, error) {
	if name == "" || strings.EqualFold(name, "Default") {
		return 1, nil
	}
	if c.api.groups == nil {
		return 0, fmt.Errorf("runner_group %s: repository runners have no runner groups; leave it empty", secret.Preview(name))
	}
	opts := gh.ListOptions{PerPage: 100}
	for {
		groups, resp, err := callFor(ctx, c, "list runner groups", func() ([]runnerGroup, *gh.Response, error) {
			return c.api.groups(ctx, c.scope.Owner, opts)
		})
		if err != nil {
			return 0, err
		}
		for _, g := range groups {
			if g.name == name {
				return g.id, nil
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return 0, fmt.Errorf("runner_group %s does not exist in %s %s", secret.Preview(name), c.scope.Kind, c.scope)
		}
		opts.Page = resp.NextPage
	}
}

// JITConfig registers a just-in-time runner and returns its id and its
// encoded configuration (a secret: whoever holds it receives the job).
// The POST is not idempotent: when an attempt's answer was lost (a 5xx,
// a transport error) and the retry meets 409 for the name, the runner of
// that name is the lost attempt's (names are unique per job and second):
// it is removed and the registration tried once more.
func (c *Client) JITConfig(ctx context.Context, name string, groupID int64, labels []string, workFolder string) (int64, secret.Value, error) {
	req := &gh.GenerateJITConfigRequest{Name: name, RunnerGroupID: groupID, Labels: labels, WorkFolder: &workFolder}
	cfg, lost, err := c.jit(ctx, req)
	if lost && conflict(err) {
		if err = c.removeLost(ctx, name); err == nil {
			err = cutoffErr(ctx)
		}
		if err == nil {
			cfg, _, err = c.jit(ctx, req)
		}
	}
	if err != nil {
		return 0, secret.Value{}, err
	}
	if cfg.GetRunner().GetID() == 0 || cfg.GetEncodedJITConfig() == "" {
		return 0, secret.Value{}, errors.New("create JIT runner config: GitHub returned no runner id or config")
	}
	return cfg.GetRunner().GetID(), secret.New(cfg.GetEncodedJITConfig()), nil
}

// jit is one generate-jitconfig call with the retry policy; lost says an
// attempt ended without GitHub's answer (it may have registered).
func (c *Client) jit(ctx context.Context, req *gh.GenerateJITConfigRequest) (cfg *gh.JITRunnerConfig, lost bool, err error) {
	cfg, _, err = callFor(ctx, c, "create JIT runner config", func() (*gh.JITRunnerConfig, *gh.Response, error) {
		cfg, resp, err := c.api.jit(ctx, c.scope.Owner, req)
		if resp == nil || resp.Response == nil || resp.StatusCode >= 500 {
			lost = lost || err != nil
		}
		if resp != nil && resp.StatusCode == http.StatusConflict {
			return cfg, resp, fmt.Errorf("a runner named %q already exists", req.Name)
		}
		return cfg, resp, err
	})
	return cfg, lost, err
}

// cutoffErr is an error once WithRetryCutoff's cutoff is done: no new
// registration starts for a cancelled job.
func cutoffErr(ctx context.Context) error {
	if cut, ok := ctx.Value(retryCutoffKey{}).(context.Context); ok && cut.Err() != nil {
		return &APIError{Op: "create JIT runner config", Err: errors.New("not registered again, the job is cancelled")}
	}
	return nil
}

func conflict(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusConflict
}

// removeLost removes the runner a registration whose answer was lost
// made, found by its name.
func (c *Client) removeLost(ctx context.Context, name string) error {
	r, found, err := c.FindRunner(ctx, name)
	if err != nil {
		return fmt.Errorf("create JIT runner config: an attempt's answer was lost and the retry met 409; could not look runner %s up: %w", name, err)
	}
	if found {
		c.log.Warn("a registration's answer was lost and GitHub kept the runner: removing it to register again", "runner", name, "runner_id", r.ID)
		if err := c.DeleteRunner(ctx, r.ID); err != nil {
			return fmt.Errorf("create JIT runner config: could not remove runner %s, which a registration whose answer was lost made: %w", name, err)
		}
	}
	return nil
}

// RegistrationToken returns a token for config.sh (valid one hour).
func (c *Client) RegistrationToken(ctx context.Context) (secret.Value, error) {
	tok, _, err := callFor(ctx, c, "create registration token", func() (*gh.RegistrationToken, *gh.Response, error) {
		return c.api.token(ctx, c.scope.Owner)
	})
	if err != nil {
		return secret.Value{}, err
	}
	return secret.New(tok.GetToken()), nil
}

// GetRunner returns the runner, or found=false when GitHub no longer has it.
func (c *Client) GetRunner(ctx context.Context, id int64) (r RegisteredRunner, found bool, err error) {
	gr, _, err := callFor(ctx, c, "get runner", func() (*gh.Runner, *gh.Response, error) {
		return c.api.get(ctx, c.scope.Owner, id)
	})
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == 404 {
		return RegisteredRunner{}, false, nil
	}
	if err != nil {
		return RegisteredRunner{}, false, err
	}
	return runnerOf(gr), true, nil
}

// MaxFindPages bounds the pages FindRunner reads (100 runners a page):
// GitHub filters by name, but a server that ignores the filter (older
// GitHub Enterprise Server) lists every runner.
const MaxFindPages = 10

// FindRunner looks a runner up by its name, which GitHub keeps unique per
// scope (a registration whose answer was lost is found this way).
func (c *Client) FindRunner(ctx context.Context, name string) (RegisteredRunner, bool, error) {
	opts := &gh.ListRunnersOptions{Name: &name, ListOptions: gh.ListOptions{PerPage: 100}}
	for range MaxFindPages {
		rs, next, err := c.listRunners(ctx, opts)
		if err != nil {
			return RegisteredRunner{}, false, err
		}
		for _, r := range rs {
			if r.Name == name {
				return r, true, nil
			}
		}
		if next == 0 {
			return RegisteredRunner{}, false, nil
		}
		opts.Page = next
	}
	return RegisteredRunner{}, false, fmt.Errorf("look up runner %s: not in the first %d pages of the runner list", name, MaxFindPages)
}

// RunnersPage lists one page (from 1) of the scope's runners, 100 a page,
// and returns the next page's number (0 after the last).
func (c *Client) RunnersPage(ctx context.Context, page int) ([]RegisteredRunner, int, error) {
	return c.listRunners(ctx, &gh.ListRunnersOptions{ListOptions: gh.ListOptions{Page: page, PerPage: 100}})
}

func (c *Client) listRunners(ctx context.Context, opts *gh.ListRunnersOptions) ([]RegisteredRunner, int, error) {
	rs, resp, err := callFor(ctx, c, "list runners", func() (*gh.Runners, *gh.Response, error) {
		return c.api.list(ctx, c.scope.Owner, opts)
	})
	if err != nil {
		return nil, 0, err
	}
	var out []RegisteredRunner
	for _, r := range rs.Runners {
		out = append(out, runnerOf(r))
	}
	return out, resp.NextPage, nil
}

func runnerOf(r *gh.Runner) RegisteredRunner {
	var labels []string
	for _, l := range r.Labels {
		labels = append(labels, l.GetName())
	}
	return RegisteredRunner{ID: r.GetID(), Name: r.GetName(), Status: r.GetStatus(), Busy: r.GetBusy(), Labels: labels}
}

// DeleteRunner removes a runner by id. A runner GitHub already removed
// (404) counts as deleted; one still running a job (422 saying so) is
// retried until ctx ends. Any other 422 (a validation failure) fails.
func (c *Client) DeleteRunner(ctx context.Context, id int64) error {
	p := retry.Policy{Base: c.Backoff, Max: c.MaxWait, Classify: func(err error, _ int) retry.Verdict {
		return retry.Verdict{Retry: runnerBusy(err)}
	}}
	err := retry.Do(ctx, p, func(int) error {
		err := c.call(ctx, "delete runner", func() (*gh.Response, error) {
			return c.api.remove(ctx, c.scope.Owner, id)
		})
		if ae := (*APIError)(nil); errors.As(err, &ae) && ae.Status == 404 {
			return nil
		}
		return err
	})
	if re := (*retry.Error)(nil); errors.As(err, &re) && re.Reason == retry.Cancelled {
		return fmt.Errorf("delete runner %d: still busy with a job when time ran out: %w", id, ctx.Err())
	}
	return err
}
