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
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v66/github"

	"github.com/runpod-workers/worker-github_runner/internal/retry"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Kind is what a scope names.
type Kind int

// Scope kinds.
const (
	Org Kind = iota
	Repo
	Enterprise
)

func (k Kind) String() string {
	return [...]string{"organization", "repository", "enterprise"}[k]
}

// Scope is where runners are registered.
type Scope struct {
	Kind  Kind
	Owner string // organisation, repository owner, or enterprise slug
	Repo  string
}

func (s Scope) String() string {
	switch s.Kind {
	case Repo:
		return s.Owner + "/" + s.Repo
	case Enterprise:
		return "enterprises/" + s.Owner
	}
	return s.Owner
}

var (
	ownerRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9]|-[A-Za-z0-9]){0,38}$`)
	repoRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	slugRE  = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$`)
)

// ParseScope reads "org", "owner/repo" or "enterprises/slug" with GitHub's
// naming rules, so nothing odd ever reaches a URL or a process.
func ParseScope(s string) (Scope, error) {
	parts := strings.Split(s, "/")
	bad := func(why string) (Scope, error) {
		return Scope{}, fmt.Errorf("github_org %s is not an organisation, owner/repo or enterprises/<slug>: %s", secret.Preview(s), why)
	}
	switch {
	case s == "":
		return Scope{}, errors.New("github_org is empty: set it to an organisation (my-org), a repository (owner/repo) or enterprises/<slug>")
	case len(parts) == 1:
		if !ownerRE.MatchString(s) {
			return bad("an organisation name has up to 39 letters, digits and single hyphens")
		}
		return Scope{Kind: Org, Owner: s}, nil
	case len(parts) == 2 && parts[0] == "enterprises":
		if !slugRE.MatchString(parts[1]) {
			return bad("an enterprise slug has lower-case letters, digits and hyphens")
		}
		return Scope{Kind: Enterprise, Owner: parts[1]}, nil
	case len(parts) == 2:
		if !ownerRE.MatchString(parts[0]) {
			return bad("the owner has up to 39 letters, digits and single hyphens")
		}
		if !repoRE.MatchString(parts[1]) || parts[1] == "." || parts[1] == ".." || strings.HasSuffix(parts[1], ".git") {
			return bad("a repository name has up to 100 letters, digits, '.', '_' and '-'")
		}
		return Scope{Kind: Repo, Owner: parts[0], Repo: parts[1]}, nil
	}
	return bad("too many '/'")
}

// MissingPermission says what a credential needs for a scope.
func (s Scope) MissingPermission() string {
	switch s.Kind {
	case Repo:
		return "a classic PAT needs the repo scope; a fine-grained token needs \"Administration: write\" on the repository"
	case Enterprise:
		return "a classic PAT needs manage_runners:enterprise (fine-grained tokens and apps cannot manage enterprise runners)"
	}
	return "a classic PAT needs admin:org; a fine-grained token or GitHub App needs \"Self-hosted runners: write\" on the organisation"
}

// MaxRateLimitWait is the longest a call waits for a rate limit to reset
// before it fails.
var MaxRateLimitWait = 5 * time.Minute

// Client calls GitHub for one scope.
type Client struct {
	gh    *gh.Client
	scope Scope
	web   string
	log   *slog.Logger
	// Attempts bounds retries of one call (default 5); Backoff is the first
	// wait (default 1 s) and MaxWait the longest (default 60 s).
	Attempts int
	Backoff  time.Duration
	MaxWait  time.Duration
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
	api, err := CanonicalAPIURL(o.APIURL, o.TestOnlyAllowLoopbackHTTP)
	if err != nil {
		return nil, err
	}
	c := gh.NewClient(o.httpClient()).WithAuthToken(o.Token.Reveal())
	if api != DefaultAPIURL {
		// go-github keeps a base URL on an api.* host as it is (GHE.com)
		// and uses GHES's /api/v3/ as CanonicalAPIURL made it.
		if c, err = c.WithEnterpriseURLs(api, api); err != nil {
			return nil, fmt.Errorf("github_api_url: %w", err)
		}
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{gh: c, scope: scope, web: ServerURL(api), log: log, Attempts: 5, Backoff: time.Second, MaxWait: 60 * time.Second}, nil
}

// RunnerURL is the URL config.sh and the runner use for the scope.
func (c *Client) RunnerURL() string { return c.web + "/" + c.scope.String() }

// Runner is a registered runner as GitHub reports it.
type Runner struct {
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
// time running out) or GitHub says the object already exists (409).
func Uncertain(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return err != nil
	}
	return ae.Status == 0 || ae.Status >= 500 || ae.Status == http.StatusConflict
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

// RunnerGroupID resolves a runner group name to its id. An empty name or
// "Default" is group 1. Repositories have no runner groups.
func (c *Client) RunnerGroupID(ctx context.Context, name string) (int64, error) {
	if name == "" || strings.EqualFold(name, "Default") {
		return 1, nil
	}
	opts := gh.ListOptions{PerPage: 100}
	for {
		var names []string
		var ids []int64
		var resp *gh.Response
		switch c.scope.Kind {
		case Repo:
			return 0, fmt.Errorf("runner_group %s: repository runners have no runner groups; leave it empty", secret.Preview(name))
		case Org:
			var groups *gh.RunnerGroups
			err := c.call(ctx, "list runner groups", func() (*gh.Response, error) {
				var err error
				groups, resp, err = c.gh.Actions.ListOrganizationRunnerGroups(ctx, c.scope.Owner, &gh.ListOrgRunnerGroupOptions{ListOptions: opts})
				return resp, err
			})
			if err != nil {
				return 0, err
			}
			for _, g := range groups.RunnerGroups {
				names, ids = append(names, g.GetName()), append(ids, g.GetID())
			}
		case Enterprise:
			var groups *gh.EnterpriseRunnerGroups
			err := c.call(ctx, "list runner groups", func() (*gh.Response, error) {
				var err error
				groups, resp, err = c.gh.Enterprise.ListRunnerGroups(ctx, c.scope.Owner, &gh.ListEnterpriseRunnerGroupOptions{ListOptions: opts})
				return resp, err
			})
			if err != nil {
				return 0, err
			}
			for _, g := range groups.RunnerGroups {
				names, ids = append(names, g.GetName()), append(ids, g.GetID())
			}
		}
		for i, n := range names {
			if n == name {
				return ids[i], nil
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
func (c *Client) JITConfig(ctx context.Context, name string, groupID int64, labels []string, workFolder string) (int64, secret.Value, error) {
	req := &gh.GenerateJITConfigRequest{Name: name, RunnerGroupID: groupID, Labels: labels, WorkFolder: &workFolder}
	var cfg *gh.JITRunnerConfig
	err := c.call(ctx, "create JIT runner config", func() (*gh.Response, error) {
		var resp *gh.Response
		var err error
		switch c.scope.Kind {
		case Repo:
			cfg, resp, err = c.gh.Actions.GenerateRepoJITConfig(ctx, c.scope.Owner, c.scope.Repo, req)
		case Enterprise:
			cfg, resp, err = c.gh.Enterprise.GenerateEnterpriseJITConfig(ctx, c.scope.Owner, req)
		default:
			cfg, resp, err = c.gh.Actions.GenerateOrgJITConfig(ctx, c.scope.Owner, req)
		}
		if resp != nil && resp.StatusCode == http.StatusConflict {
			return resp, fmt.Errorf("a runner named %q already exists", name)
		}
		return resp, err
	})
	if err != nil {
		return 0, secret.Value{}, err
	}
	if cfg.GetRunner().GetID() == 0 || cfg.GetEncodedJITConfig() == "" {
		return 0, secret.Value{}, errors.New("create JIT runner config: GitHub returned no runner id or config")
	}
	return cfg.GetRunner().GetID(), secret.New(cfg.GetEncodedJITConfig()), nil
}

// RegistrationToken returns a token for config.sh (valid one hour).
func (c *Client) RegistrationToken(ctx context.Context) (secret.Value, error) {
	var tok *gh.RegistrationToken
	err := c.call(ctx, "create registration token", func() (*gh.Response, error) {
		var resp *gh.Response
		var err error
		switch c.scope.Kind {
		case Repo:
			tok, resp, err = c.gh.Actions.CreateRegistrationToken(ctx, c.scope.Owner, c.scope.Repo)
		case Enterprise:
			tok, resp, err = c.gh.Enterprise.CreateRegistrationToken(ctx, c.scope.Owner)
		default:
			tok, resp, err = c.gh.Actions.CreateOrganizationRegistrationToken(ctx, c.scope.Owner)
		}
		return resp, err
	})
	if err != nil {
		return secret.Value{}, err
	}
	return secret.New(tok.GetToken()), nil
}

// GetRunner returns the runner, or found=false when GitHub no longer has it.
func (c *Client) GetRunner(ctx context.Context, id int64) (r Runner, found bool, err error) {
	var gr *gh.Runner
	err = c.call(ctx, "get runner", func() (*gh.Response, error) {
		var resp *gh.Response
		var err error
		switch c.scope.Kind {
		case Repo:
			gr, resp, err = c.gh.Actions.GetRunner(ctx, c.scope.Owner, c.scope.Repo, id)
		case Enterprise:
			gr, resp, err = c.gh.Enterprise.GetRunner(ctx, c.scope.Owner, id)
		default:
			gr, resp, err = c.gh.Actions.GetOrganizationRunner(ctx, c.scope.Owner, id)
		}
		return resp, err
	})
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == 404 {
		return Runner{}, false, nil
	}
	if err != nil {
		return Runner{}, false, err
	}
	return runnerOf(gr), true, nil
}

// MaxFindPages bounds the pages FindRunner reads (100 runners a page):
// GitHub filters by name, but a server that ignores the filter (older
// GitHub Enterprise Server) lists every runner.
const MaxFindPages = 10

// FindRunner looks a runner up by its name, which GitHub keeps unique per
// scope (a registration whose answer was lost is found this way).
func (c *Client) FindRunner(ctx context.Context, name string) (Runner, bool, error) {
	opts := &gh.ListRunnersOptions{Name: &name, ListOptions: gh.ListOptions{PerPage: 100}}
	for range MaxFindPages {
		rs, next, err := c.listRunners(ctx, opts)
		if err != nil {
			return Runner{}, false, err
		}
		for _, r := range rs {
			if r.Name == name {
				return r, true, nil
			}
		}
		if next == 0 {
			return Runner{}, false, nil
		}
		opts.Page = next
	}
	return Runner{}, false, fmt.Errorf("look up runner %s: not in the first %d pages of the runner list", name, MaxFindPages)
}

// RunnersPage lists one page (from 1) of the scope's runners, 100 a page,
// and returns the next page's number (0 after the last).
func (c *Client) RunnersPage(ctx context.Context, page int) ([]Runner, int, error) {
	return c.listRunners(ctx, &gh.ListRunnersOptions{ListOptions: gh.ListOptions{Page: page, PerPage: 100}})
}

func (c *Client) listRunners(ctx context.Context, opts *gh.ListRunnersOptions) ([]Runner, int, error) {
	var rs *gh.Runners
	var resp *gh.Response
	err := c.call(ctx, "list runners", func() (*gh.Response, error) {
		var err error
		switch c.scope.Kind {
		case Repo:
			rs, resp, err = c.gh.Actions.ListRunners(ctx, c.scope.Owner, c.scope.Repo, opts)
		case Enterprise:
			rs, resp, err = c.gh.Enterprise.ListRunners(ctx, c.scope.Owner, opts)
		default:
			rs, resp, err = c.gh.Actions.ListOrganizationRunners(ctx, c.scope.Owner, opts)
		}
		return resp, err
	})
	if err != nil {
		return nil, 0, err
	}
	var out []Runner
	for _, r := range rs.Runners {
		out = append(out, runnerOf(r))
	}
	return out, resp.NextPage, nil
}

func runnerOf(r *gh.Runner) Runner {
	var labels []string
	for _, l := range r.Labels {
		labels = append(labels, l.GetName())
	}
	return Runner{ID: r.GetID(), Name: r.GetName(), Status: r.GetStatus(), Busy: r.GetBusy(), Labels: labels}
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
			switch c.scope.Kind {
			case Repo:
				return c.gh.Actions.RemoveRunner(ctx, c.scope.Owner, c.scope.Repo, id)
			case Enterprise:
				return c.gh.Enterprise.RemoveRunner(ctx, c.scope.Owner, id)
			}
			return c.gh.Actions.RemoveOrganizationRunner(ctx, c.scope.Owner, id)
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
