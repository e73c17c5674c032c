package github

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

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

// refusal is the error for an answer the policy does not retry.
func (s Scope) refusal(op string, status int, err error) error {
	switch status {
	case 401:
		return &APIError{Op: op, Status: status, Err: errors.New("bad credentials: the PAT is invalid or expired"), Hint: s.MissingPermission()}
	case 403:
		return &APIError{Op: op, Status: status, Err: errors.New("forbidden"), Hint: s.MissingPermission()}
	case 404:
		return &APIError{Op: op, Status: status, Err: fmt.Errorf("%s %s not found, or the credential cannot see it", s.Kind, s), Hint: s.MissingPermission()}
	}
	return &APIError{Op: op, Status: status, Err: err}
}

// scopeAPI is one scope's runner endpoints, chosen once (apiFor). Each
// takes the scope's owner: the organisation, the repository's owner or
// the enterprise.
type scopeAPI struct {
	jit    func(context.Context, string, *gh.GenerateJITConfigRequest) (*gh.JITRunnerConfig, *gh.Response, error)
	token  func(context.Context, string) (*gh.RegistrationToken, *gh.Response, error)
	get    func(context.Context, string, int64) (*gh.Runner, *gh.Response, error)
	list   func(context.Context, string, *gh.ListRunnersOptions) (*gh.Runners, *gh.Response, error)
	remove func(context.Context, string, int64) (*gh.Response, error)
	// groups lists a page of runner groups; nil: the scope has none.
	groups func(context.Context, string, gh.ListOptions) ([]runnerGroup, *gh.Response, error)
}

type runnerGroup struct {
	name string
	id   int64
}

// apiFor is the scope's adapter over go-github.
func apiFor(s Scope, c *gh.Client) scopeAPI {
	a, e := c.Actions, c.Enterprise
	switch s.Kind {
	case Repo:
		return repoAPI(a, s.Repo)
	case Enterprise:
		return scopeAPI{jit: e.GenerateEnterpriseJITConfig, token: e.CreateRegistrationToken, get: e.GetRunner, list: e.ListRunners, remove: e.RemoveRunner,
			groups: func(ctx context.Context, owner string, o gh.ListOptions) ([]runnerGroup, *gh.Response, error) {
				gs, resp, err := e.ListRunnerGroups(ctx, owner, &gh.ListEnterpriseRunnerGroupOptions{ListOptions: o})
				if gs == nil {
					return nil, resp, err
				}
				return groupsOf(gs.RunnerGroups), resp, err
			}}
	}
	return scopeAPI{jit: a.GenerateOrgJITConfig, token: a.CreateOrganizationRegistrationToken, get: a.GetOrganizationRunner, list: a.ListOrganizationRunners, remove: a.RemoveOrganizationRunner,
		groups: func(ctx context.Context, owner string, o gh.ListOptions) ([]runnerGroup, *gh.Response, error) {
			gs, resp, err := a.ListOrganizationRunnerGroups(ctx, owner, &gh.ListOrgRunnerGroupOptions{ListOptions: o})
			if gs == nil {
				return nil, resp, err
			}
			return groupsOf(gs.RunnerGroups), resp, err
		}}
}

// repoAPI is a repository's adapter: the Actions endpoints with the
// repository's name bound. Repositories have no runner groups.
func repoAPI(a *gh.ActionsService, repo string) scopeAPI {
	return scopeAPI{
		jit: func(ctx context.Context, owner string, r *gh.GenerateJITConfigRequest) (*gh.JITRunnerConfig, *gh.Response, error) {
			return a.GenerateRepoJITConfig(ctx, owner, repo, r)
		},
		token: func(ctx context.Context, owner string) (*gh.RegistrationToken, *gh.Response, error) {
			return a.CreateRegistrationToken(ctx, owner, repo)
		},
		get: func(ctx context.Context, owner string, id int64) (*gh.Runner, *gh.Response, error) {
			return a.GetRunner(ctx, owner, repo, id)
		},
		list: func(ctx context.Context, owner string, o *gh.ListRunnersOptions) (*gh.Runners, *gh.Response, error) {
			return a.ListRunners(ctx, owner, repo, o)
		},
		remove: func(ctx context.Context, owner string, id int64) (*gh.Response, error) {
			return a.RemoveRunner(ctx, owner, repo, id)
		},
	}
}

func groupsOf[G interface {
	GetName() string
	GetID() int64
}](gs []G) []runnerGroup {
	out := make([]runnerGroup, 0, len(gs))
	for _, g := range gs {
		out = append(out, runnerGroup{g.GetName(), g.GetID()})
	}
	return out
}
