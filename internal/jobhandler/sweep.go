package jobhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Sweep settings (the endpoint's environment).
const (
	// EnvSweep=off turns the sweep off.
	EnvSweep = "RUNNER_SWEEP"
	// EnvSweepAfter is how long ago a runner's registration must have
	// started before a sweep may remove it: seconds or a duration, at
	// least MinSweepAfter.
	EnvSweepAfter     = "RUNNER_SWEEP_AFTER"
	DefaultSweepAfter = time.Hour
	// MinSweepAfter keeps the sweep away from runners still starting: a
	// registration ends within maxRegistration of the time in the name,
	// and a registered runner is offline until its listener connects.
	MinSweepAfter = time.Hour
)

// A sweep's cost is bounded, whatever the scopes hold.
const (
	// sweepPages bounds the pages of the runner list (100 runners each)
	// one sweep reads per scope.
	sweepPages = 5
	// sweepRemovals bounds the runners one sweep removes per scope (each
	// costs two requests: a fresh look, then the removal).
	sweepRemovals = 200
	// sweepRateFloor: with fewer requests left in GitHub's rate limit, the
	// sweep stops and leaves them to the jobs.
	sweepRateFloor = 1000
	sweepTimeout   = 2 * time.Minute
)

// Sweep removes runners that workers killed without cleanup (SIGKILL, out
// of memory, a lost host) left registered: named by RunnerName, labelled
// OwnLabel, offline, not busy, and whose registration started longer ago
// than RUNNER_SWEEP_AFTER; each is read again right before it is removed,
// and left alone unless it is still offline and idle. It looks in the
// scopes the endpoint's credential is for (ALLOWED_GITHUB_SCOPES, else
// GITHUB_ORG): an organisation's or enterprise's own runners, and those
// of the repositories listed there (not of other repositories of a listed
// organisation). It reads at most sweepPages pages per scope, never waits
// for a rate limit, and stops when fewer than sweepRateFloor requests are
// left. Without an endpoint credential (GITHUB_PAT or GITHUB_APP_*), or
// with RUNNER_SWEEP=off, or once the worker took a job with a JIT
// config or a fitness check found the host unfit, it does nothing. The worker runs it once the
// first job's registration is over (see Registered).
func (h *Handler) Sweep(ctx context.Context) error {
	if v := strings.ToLower(strings.TrimSpace(h.getenv(EnvSweep))); v == "off" || v == "false" || v == "0" || v == "no" {
		return nil
	}
	after, err := sweepAfter(h.getenv(EnvSweepAfter))
	if err != nil {
		return err
	}
	in, scopes, err := h.endpointCredential()
	if err != nil || in == nil {
		return err
	}
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	if h.tookJIT.Load() {
		log.Info("no sweep: this worker took a job with a JIT config, and such a worker makes no GitHub call (the side that minted the config removes its runners)")
		return nil
	}
	if h.unfit.Load() {
		log.Info("no sweep: the host is unfit and RunPod replaces this worker")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	redactor := h.secrets()
	var errs []error
	for _, scope := range scopes {
		sw := &sweeper{scope: scope, after: after, redactor: redactor, log: log}
		err := sw.run(ctx, h, in)
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep of %s: %s", scope, errLine(redactor, err)))
		}
		if sw.rateLow {
			break
		}
	}
	return errors.Join(errs...)
}

func sweepAfter(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultSweepAfter, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil || math.IsNaN(n) || math.IsInf(n, 0) || n > 1e9 {
			return 0, fmt.Errorf("%s %s is not seconds or a duration like \"2h\"", EnvSweepAfter, secret.Preview(v))
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d < MinSweepAfter {
		return 0, fmt.Errorf("%s %v is under %v: a runner that is still registering or starting is offline too", EnvSweepAfter, d, MinSweepAfter)
	}
	return d, nil
}

// endpointCredential is the endpoint's own credential and the scopes it
// is for; nil when the endpoint has none.
func (h *Handler) endpointCredential() (*Input, []github.Scope, error) {
	if h.getenv(jobapi.EnvPAT) == "" && h.getenv(jobapi.EnvAppPrivateKey) == "" {
		return nil, nil, nil
	}
	in := &Input{TestOnlyAllowLoopbackHTTP: h.getenv(EnvTestLoopbackHTTP) == "1"}
	if err := parseCredential(rawInput{}, h.getenv, in); err != nil {
		return nil, nil, err
	}
	var err error
	if in.APIURL, err = github.CanonicalAPIURL(h.getenv(jobapi.EnvAPIURL), in.TestOnlyAllowLoopbackHTTP); err != nil {
		return nil, nil, err
	}
	scopes, _, err := allowedScopes(h.getenv)
	return in, scopes, err
}

// sweeper sweeps one scope.
type sweeper struct {
	scope    github.Scope
	after    time.Duration
	redactor *secret.Redactor
	log      *slog.Logger
	gh       *github.Client
	listed   int
	removed  int
	rateLow  bool
}

func (sw *sweeper) run(ctx context.Context, h *Handler, in *Input) error {
	gh, err := h.client(ctx, in, sw.scope, sw.redactor, sw.log, true)
	if err != nil {
		return err
	}
	sw.gh = gh
	candidates, err := sw.list(ctx)
	if err != nil {
		return err
	}
	for _, r := range candidates {
		if sw.rateLow = sw.lowRate(); sw.rateLow || sw.removed >= sweepRemovals {
			break
		}
		sw.remove(ctx, r)
	}
	sw.log.Info("runner sweep done", "scope", sw.scope.String(), "listed", sw.listed, "candidates", len(candidates), "removed", sw.removed, "older_than", sw.after)
	return nil
}

// list reads up to sweepPages pages of the runner list and returns the
// candidates, before any is removed (a removal shifts the pages).
func (sw *sweeper) list(ctx context.Context) ([]github.RegisteredRunner, error) {
	var out []github.RegisteredRunner
	page := 1
	for range sweepPages {
		runners, next, err := sw.gh.RunnersPage(ctx, page)
		if err != nil {
			return nil, err
		}
		sw.listed += len(runners)
		for _, r := range runners {
			if sw.candidate(r) {
				out = append(out, r)
			}
		}
		if sw.rateLow = sw.lowRate(); sw.rateLow || next == 0 {
			break
		}
		page = next
	}
	return out, nil
}

// lowRate says, and logs once, that GitHub's rate limit runs low.
func (sw *sweeper) lowRate() bool {
	left, limit, known := sw.gh.RateLeft()
	if !known || left >= sweepRateFloor {
		return false
	}
	if !sw.rateLow {
		sw.log.Warn("runner sweep stopped: GitHub's rate limit runs low, the requests left are the jobs'", "scope", sw.scope.String(), "rate_left", left, "rate_limit", limit)
	}
	return true
}

// candidate: the worker's name and label, offline, idle, old enough.
func (sw *sweeper) candidate(r github.RegisteredRunner) bool {
	born, ok := runnerBorn(r.Name)
	return ok && r.Status == "offline" && !r.Busy && hasLabel(r.Labels, OwnLabel) && time.Since(born) > sw.after
}

// remove reads the runner again and removes it if it is still a
// candidate: it may have come online since it was listed (a listener
// restarting after a self-update is briefly offline).
func (sw *sweeper) remove(ctx context.Context, listed github.RegisteredRunner) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	log := sw.log.With("scope", sw.scope.String(), "runner", listed.Name, "runner_id", listed.ID)
	r, found, err := sw.gh.GetRunner(ctx, listed.ID)
	switch {
	case err != nil:
		log.Warn("could not read an offline runner a stopped worker left again; left for a later sweep", "error", errLine(sw.redactor, err))
		return
	case !found:
		return
	case r.Name != listed.Name || !sw.candidate(r):
		log.Info("a runner the sweep listed is active again: left alone", "status", r.Status, "busy", r.Busy)
		return
	}
	if err := sw.gh.DeleteRunner(ctx, r.ID); err != nil {
		log.Warn("could not remove an offline runner a stopped worker left", "error", errLine(sw.redactor, err))
		return
	}
	sw.removed++
	born, _ := runnerBorn(r.Name)
	log.Info("removed an offline runner a stopped worker left", "registered", born.UTC().Format(time.RFC3339))
}

func hasLabel(labels []string, want string) bool {
	for _, l := range labels {
		if strings.EqualFold(l, want) {
			return true
		}
	}
	return false
}
