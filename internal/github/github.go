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
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	gh "github.com/google/go-github/v66/github"

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
		return Scope{}, fmt.Errorf("github_org %q is not an organisation, owner/repo or enterprises/<slug>: %s", truncate(s, 80), why)
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

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
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
	// Attempts bounds retries of one call (default 5); Backoff is the first
	// wait (default 1 s) and MaxWait the longest (default 60 s).
	Attempts int
	Backoff  time.Duration
	MaxWait  time.Duration
}

// Options configure NewClient.
type Options struct {
	// APIURL is https://api.github.com (default) or a GitHub Enterprise
	// Server's https://<host>/api/v3/.
	APIURL string
	Token  secret.Value
	HTTP   *http.Client
}

// NewClient makes a client for scope.
func NewClient(scope Scope, o Options) (*Client, error) {
	if o.Token.Empty() {
		return nil, errors.New("no GitHub credential: set github_pat in the job input or GITHUB_PAT in the endpoint's environment")
	}
	hc := o.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	c := gh.NewClient(hc).WithAuthToken(o.Token.Reveal())
	web := "https://github.com"
	api := strings.TrimSpace(o.APIURL)
	if api != "" && strings.TrimRight(api, "/") != "https://api.github.com" {
		u, err := url.Parse(api)
		if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			return nil, fmt.Errorf("github_api_url %q must be an https URL like https://github.example.com/api/v3/", api)
		}
		// WithEnterpriseURLs adds /api/v3/ where missing (without it: 406).
		if c, err = c.WithEnterpriseURLs(api, api); err != nil {
			return nil, fmt.Errorf("github_api_url %q: %w", api, err)
		}
		web = u.Scheme + "://" + u.Host
	}
	return &Client{gh: c, scope: scope, web: web, Attempts: 5, Backoff: time.Second, MaxWait: 60 * time.Second}, nil
}

func isLoopback(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// RunnerURL is the URL config.sh and the runner use for the scope.
func (c *Client) RunnerURL() string { return c.web + "/" + c.scope.String() }

// Runner is a registered runner as GitHub reports it.
type Runner struct {
	ID     int64
	Name   string
	Status string // online, offline
	Busy   bool
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

// call runs one API operation with retries: server errors, rate limits
// (waiting as GitHub asks, bounded) and transport errors are retried; 401,
// 403 and 404 fail at once with what permission is missing.
func (c *Client) call(ctx context.Context, op string, f func() (*gh.Response, error)) error {
	var last error
	for attempt := 1; ; attempt++ {
		resp, err := f()
		if err == nil {
			return nil
		}
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		var wait time.Duration
		rateLimited := false
		var rl *gh.RateLimitError
		var abuse *gh.AbuseRateLimitError
		switch {
		case errors.As(err, &rl):
			// go-github refuses to call again before the reset: wait for it
			// (plus a second, the reset has whole-second precision).
			wait, rateLimited = time.Until(rl.Rate.Reset.Time)+time.Second, true
			if wait > MaxRateLimitWait {
				return &APIError{Op: op, Status: status, Err: fmt.Errorf("rate limit exhausted until %s", rl.Rate.Reset.Time.Format(time.RFC3339)), Hint: "use a GitHub App or another token for this endpoint"}
			}
		case errors.As(err, &abuse):
			wait, rateLimited = abuse.GetRetryAfter(), true
			if wait == 0 {
				wait = c.Backoff * 10
			}
		case status == 401:
			return &APIError{Op: op, Status: status, Err: errors.New("bad credentials: the PAT is invalid or expired"), Hint: c.scope.MissingPermission()}
		case status == 403:
			return &APIError{Op: op, Status: status, Err: errors.New("forbidden"), Hint: c.scope.MissingPermission()}
		case status == 404:
			return &APIError{Op: op, Status: status, Err: fmt.Errorf("%s %s not found, or the credential cannot see it", c.scope.Kind, c.scope), Hint: c.scope.MissingPermission()}
		case status >= 500 || status == 0 || status == 429:
			wait = c.Backoff << min(attempt-1, 10)
			wait = wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
		default:
			return &APIError{Op: op, Status: status, Err: err}
		}
		last = err
		if attempt >= c.Attempts {
			return &APIError{Op: op, Status: status, Err: fmt.Errorf("giving up after %d attempts: %w", attempt, last)}
		}
		if wait > c.MaxWait && !rateLimited {
			wait = c.MaxWait
		}
		if wait < 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return &APIError{Op: op, Status: status, Err: fmt.Errorf("%w (last error: %v)", ctx.Err(), last)}
		case <-t.C:
		}
	}
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
			return 0, fmt.Errorf("runner_group %q: repository runners have no runner groups; leave it empty", name)
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
			return 0, fmt.Errorf("runner_group %q does not exist in %s %s", name, c.scope.Kind, c.scope)
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
	return Runner{ID: gr.GetID(), Name: gr.GetName(), Status: gr.GetStatus(), Busy: gr.GetBusy()}, true, nil
}

// FindRunner looks a runner up by name (token mode learns its id this way
// when the runner's own files do not say).
func (c *Client) FindRunner(ctx context.Context, name string) (Runner, bool, error) {
	opts := &gh.ListRunnersOptions{Name: &name, ListOptions: gh.ListOptions{PerPage: 100}}
	var rs *gh.Runners
	err := c.call(ctx, "list runners", func() (*gh.Response, error) {
		var resp *gh.Response
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
		return Runner{}, false, err
	}
	for _, r := range rs.Runners {
		if r.GetName() == name {
			return Runner{ID: r.GetID(), Name: r.GetName(), Status: r.GetStatus(), Busy: r.GetBusy()}, true, nil
		}
	}
	return Runner{}, false, nil
}

// DeleteRunner removes a runner by id. A runner GitHub already removed
// (404) counts as deleted; one still running a job (422) is retried until
// ctx ends.
func (c *Client) DeleteRunner(ctx context.Context, id int64) error {
	for attempt := 1; ; attempt++ {
		var resp *gh.Response
		err := c.call(ctx, "delete runner", func() (*gh.Response, error) {
			var err error
			switch c.scope.Kind {
			case Repo:
				resp, err = c.gh.Actions.RemoveRunner(ctx, c.scope.Owner, c.scope.Repo, id)
			case Enterprise:
				resp, err = c.gh.Enterprise.RemoveRunner(ctx, c.scope.Owner, id)
			default:
				resp, err = c.gh.Actions.RemoveOrganizationRunner(ctx, c.scope.Owner, id)
			}
			return resp, err
		})
		var ae *APIError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ae) && ae.Status == 404:
			return nil
		case errors.As(err, &ae) && ae.Status == 422:
			wait := min(c.Backoff<<min(attempt-1, 6), c.MaxWait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("delete runner %d: still busy with a job when time ran out: %w", id, ctx.Err())
			case <-t.C:
			}
		default:
			return err
		}
	}
}
