package scaler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
)

// restRunners is what the orphan reconcile needs of GitHub's REST API
// (*github.Client): the scope's runner list and removal.
type restRunners interface {
	RunnersPage(ctx context.Context, page int) ([]github.RegisteredRunner, int, error)
	DeleteRunner(ctx context.Context, id int64) error
}

const (
	// reconcileChecks: the runner list is reconciled every this many
	// check intervals, and once the message session opens.
	reconcileChecks = 10
	// maxReconcilePages bounds one reconcile's list (100 runners a page).
	maxReconcilePages = 50
)

// orphanDeleteTimeout bounds one removal: GitHub's 422 for a runner that
// took a job meanwhile is retried until then, then the runner is left
// alone (a variable for tests).
var orphanDeleteTimeout = 5 * time.Second

// restClient is a client of GitHub's REST API for the scope of
// cfg.GitHubURL, with the scaler's credential (the App's installation
// or the PAT), github.com, GHE.com or a GitHub Enterprise Server.
func (s *Scaler) restClient(ctx context.Context) (*github.Client, error) {
	u, err := url.Parse(s.cfg.GitHubURL)
	if err != nil {
		return nil, errors.New("github_url is not a URL")
	}
	scope, err := github.ParseScope(strings.Trim(u.Path, "/"))
	if err != nil {
		return nil, err
	}
	api, err := github.CanonicalAPIURL(u.Scheme+"://"+u.Host, u.Scheme == "http")
	if err != nil {
		return nil, err
	}
	o := github.Options{APIURL: api, Log: s.log, FailOnRateLimit: true, HTTP: &http.Client{Timeout: gitHubCallTimeout},
		// http only for a loopback fake (github refuses http elsewhere).
		TestOnlyAllowLoopbackHTTP: u.Scheme == "http"}
	var c *github.Client
	if s.sec.AppPrivateKey.Empty() {
		o.Token = s.sec.PAT
		c, err = github.NewClient(scope, o)
	} else {
		id, perr := strconv.ParseInt(s.sec.AppClientID, 10, 64)
		if perr != nil {
			return nil, errors.New("the GitHub App is given by its client ID: the REST client needs its numeric app ID (GITHUB_APP_ID)")
		}
		c, err = github.NewAppClient(ctx, scope, o, github.App{ID: id, InstallationID: s.sec.AppInstallationID, PrivateKey: s.sec.AppPrivateKey}, nil)
	}
	if err != nil {
		return nil, err
	}
	c.Attempts, c.MaxWait = 3, gitHubRetryWaitMax
	return c, nil
}

// runnerNameRE matches the names runnerName gives: the scale set's name,
// 8 random hex digits and, since the reconcile, the minting time (Unix
// seconds, base 36).
var runnerNameRE = regexp.MustCompile(`^(.+)-[0-9a-f]{8}(?:-([0-9a-z]{1,12}))?$`)

// mintedAt reads the time runnerName put into a runner's name of this
// scale set; ok is false for a name of another scale set or scaler.
func (s *set) mintedAt(name string) (t time.Time, ours, timed bool) {
	m := runnerNameRE.FindStringSubmatch(name)
	if m == nil || m[1] != s.cfg.Name {
		return time.Time{}, false, false
	}
	sec, err := strconv.ParseInt(m[2], 36, 64)
	if err != nil {
		return time.Time{}, true, false
	}
	return time.Unix(sec, 0), true, true
}

// belongs reports whether a listed runner is one of this scale set's:
// it carries the scale set's name as a label (a scale set's runners carry
// its labels) and a name runnerName gives.
func (s *set) belongs(r github.RegisteredRunner) bool {
	if _, ours, _ := s.mintedAt(r.Name); !ours {
		return false
	}
	for _, l := range r.Labels {
		if strings.EqualFold(l, s.cfg.Name) {
			return true
		}
	}
	return false
}

// maybeReconcile reconciles once the message session opened, then
// every reconcileChecks checks. A scaler standing by does not: the
// runners it does not know are the active scaler's.
func (s *set) maybeReconcile(ctx context.Context) {
	if s.rest == nil {
		return
	}
	s.mu.Lock()
	due := s.status == "listening" && time.Since(s.reconciledAt) >= reconcileChecks*s.check
	s.mu.Unlock()
	if due {
		s.reconcile(ctx)
	}
}

// reconcile removes orphans: runners of this scale set GitHub lists that
// this scaler does not know (another scaler's, one that stopped without
// leaving its state here), not busy, and older than the idle timeout
// (by the time in the name, or since this scaler first saw them). Their
// RunPod jobs, if any, end at once: their runner cannot connect.
func (s *set) reconcile(ctx context.Context) {
	list, err := s.listRunners(ctx)
	s.mu.Lock()
	s.reconciledAt = time.Now()
	s.mu.Unlock()
	if err != nil {
		s.apiError("github", "list-runners")
		s.log.Warn("cannot list the runners to remove orphans; trying again at the next reconcile", errAttr(err))
		return
	}
	now := time.Now()
	var orphans []github.RegisteredRunner
	s.mu.Lock()
	seen := make(map[int64]time.Time)
	for _, r := range list {
		if !s.belongs(r) || s.find(r.Name) != nil {
			continue
		}
		first, ok := s.seen[r.ID]
		if !ok {
			first = now
		}
		seen[r.ID] = first
		age := now.Sub(first)
		if t, _, timed := s.mintedAt(r.Name); timed {
			age = max(age, now.Sub(t))
		}
		if !r.Busy && age > s.cfg.IdleTimeout {
			orphans = append(orphans, r)
		}
	}
	s.seen = seen
	s.mu.Unlock()
	for _, r := range orphans {
		if ctx.Err() != nil {
			return
		}
		s.removeOrphan(ctx, r)
	}
}

// listRunners lists the scope's runners, at most maxReconcilePages.
func (s *set) listRunners(ctx context.Context) ([]github.RegisteredRunner, error) {
	var out []github.RegisteredRunner
	for page := 1; page != 0; {
		if page > maxReconcilePages {
			return nil, fmt.Errorf("more than %d pages of runners: not reconciled", maxReconcilePages)
		}
		rs, next, err := s.rest.RunnersPage(ctx, page)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		page = next
	}
	return out, nil
}

func (s *set) removeOrphan(ctx context.Context, r github.RegisteredRunner) {
	dctx, cancel := context.WithTimeout(ctx, orphanDeleteTimeout)
	err := s.rest.DeleteRunner(dctx, r.ID)
	cancel()
	switch {
	case err == nil:
		s.m.add("runpod_scaler_orphans_removed_total", 1, "scale_set", s.cfg.Name)
		s.log.Info("removed an orphaned runner: not this scaler's, idle for longer than the idle timeout", "runner", r.Name,
			"runner_id", r.ID, "status", r.Status)
	case ctx.Err() != nil:
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Info("an orphaned runner took a job meanwhile: leaving it", "runner", r.Name, "runner_id", r.ID)
	default:
		s.apiError("github", "remove-orphan")
		s.log.Warn("cannot remove an orphaned runner; trying again at the next reconcile", "runner", r.Name, errAttr(err))
	}
}

// reconciler is the REST client of the orphan reconcile, or nil (it is
// logged) when none can be made: the scale sets then run without it.
func (s *Scaler) reconciler(ctx context.Context) restRunners {
	c, err := s.restClient(ctx)
	if err != nil {
		s.m.add("runpod_scaler_api_errors_total", 1, "api", "github", "op", "rest-client")
		s.log.Error("orphaned runners (another scaler's) are not removed: no client of GitHub's REST API", errAttr(err))
		return nil
	}
	return c
}
