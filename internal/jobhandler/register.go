package jobhandler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/listener"
	"github.com/runpod-workers/worker-github_runner/internal/retry"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// DefaultGrace is runpod.Options.Grace's default.
const DefaultGrace = runpod.DefaultGrace

// budget is how long after a cancel the job may go on (finishing a
// registration, stopping the runner, removing it): the grace less what
// posting the result needs.
func (h *Handler) budget() time.Duration {
	grace := h.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	return grace - max(2*time.Second, grace/5)
}

// stopGrace is StopGrace, else what the runner needs to cancel its job
// and report it (listener.DefaultStopGrace, 45 s), bounded so that a stop
// after a cancel fits in the budget: when the runner is to be removed
// afterwards, all but 10 s (at least half of it) for the removal; for a JIT
// job, which removes nothing, all but a tenth (at least 1 s). With the
// default grace (70 s: a 56 s budget) both get 45 s. A runner that does not
// stop in time is killed.
func (h *Handler) stopGrace(jit bool) time.Duration {
	if h.StopGrace > 0 {
		return h.StopGrace
	}
	b := h.budget()
	if jit {
		return min(listener.DefaultStopGrace, b-max(time.Second, b/10))
	}
	return min(listener.DefaultStopGrace, max(b/2, b-10*time.Second))
}

func (h *Handler) cleanupTimeout() time.Duration {
	if h.CleanupTimeout > 0 {
		return h.CleanupTimeout
	}
	return 2 * time.Minute
}

// afterCancel returns a context that ctx's cancellation does not end at
// once: it ends d after it (or when stop is called).
func afterCancel(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-out.Done():
			return
		case <-ctx.Done():
		}
		if retry.Sleep(out, nil, d) == nil {
			cancel(fmt.Errorf("%v after the job was cancelled: the grace period is used up", d))
		}
	}()
	return out, func() { cancel(context.Canceled) }
}

// maxRegistration bounds a registration, retries and rate-limit waits
// included, from the time in the runner's name: with the runner's start,
// it stays well under MinSweepAfter, so a sweep never takes a runner that
// is still starting for a leftover.
const maxRegistration = 15 * time.Minute

// registerRunner registers the runner and records its id. The runner's name,
// which carries the time, is made just before. A cancel does not cut the
// registration call off (GitHub may complete it anyway, and then the
// runner must be removed): the call in flight gets half the budget to
// finish, and no new attempt starts.
func (s *session) registerRunner(ctx context.Context, groupID int64) error {
	res := s.res
	var tok secret.Value
	if s.in.Mode == ModeToken {
		var err error
		if tok, err = s.gh.RegistrationToken(ctx); err != nil {
			return err
		}
	}
	regCtx, stop := afterCancel(ctx, s.h.budget()/2)
	defer stop()
	regCtx, cancel := context.WithTimeout(regCtx, maxRegistration)
	defer cancel()
	regCtx = github.WithRetryCutoff(regCtx, ctx)
	res.RunnerName = RunnerName(s.h.PodID, s.jobID, time.Now())
	s.registering = true
	if s.in.Mode == ModeToken {
		return s.configure(regCtx, tok)
	}
	id, jit, err := s.gh.JITConfig(regCtx, res.RunnerName, groupID, res.Labels, "_work")
	if err != nil {
		s.registering = github.Uncertain(err)
		s.uncertain = s.registering
		return err
	}
	res.RunnerID = id
	s.redactor.Add(jit)
	s.rcfg.JIT = jit
	return nil
}

// configure registers the runner with config.sh (token mode).
func (s *session) configure(ctx context.Context, tok secret.Value) error {
	res := s.res
	cerr := listener.Configure(ctx, s.rcfg, listener.ConfigureOptions{URL: s.gh.RunnerURL(), Token: tok, Name: res.RunnerName, Labels: res.Labels, RunnerGroup: s.in.RunnerGroup, WorkFolder: "_work"})
	if id, err := listener.ReadRunnerID(s.rcfg.Root); err == nil {
		res.RunnerID = id
	}
	if cerr != nil {
		s.uncertain = ctx.Err() != nil // cut off while registering
		return cerr
	}
	if res.RunnerID == 0 {
		if err := s.findRunner(ctx); err != nil {
			return err
		}
	}
	if res.RunnerID == 0 {
		return errors.New("configure runner: registered, but GitHub does not list it")
	}
	return nil
}

// findRunner learns the runner's id from its unique name: when a
// registration's answer was lost, or config.sh did not say.
func (s *session) findRunner(ctx context.Context) error {
	r, found, err := s.gh.FindRunner(ctx, s.res.RunnerName)
	if err != nil {
		return fmt.Errorf("could not ask GitHub whether runner %s is registered: %w", s.res.RunnerName, err)
	}
	if found {
		s.res.RunnerID = r.ID
	}
	return nil
}

// cleanup removes the runner unless GitHub already did (it removes an
// ephemeral runner after its job). It runs on every path once GitHub may
// hold the runner, within the grace budget after a cancel.
func (s *session) cleanup() {
	if s.cleaned || (!s.registering && !s.minted) {
		return
	}
	s.cleaned = true
	if s.minted {
		s.leaveJIT()
		return
	}
	ctx, cancel := context.WithTimeout(s.shutdown, s.h.cleanupTimeout())
	defer cancel()
	res, log := s.res, s.log
	if res.RunnerID == 0 && !s.identify(ctx) {
		return
	}
	_, found, err := s.gh.GetRunner(ctx, res.RunnerID)
	if err == nil && !found {
		res.RunnerRemoved = "by GitHub"
		log.Info("runner already removed by GitHub", "runner_id", res.RunnerID)
		return
	}
	if err := s.gh.DeleteRunner(ctx, res.RunnerID); err != nil {
		res.RunnerRemoved = "no"
		log.Error("could not remove the runner from GitHub: it stays listed until a later worker's sweep or GitHub removes it", "runner_id", res.RunnerID, "error", errLine(s.redactor, err))
		return
	}
	res.RunnerRemoved = "by the worker"
	log.Info("runner removed", "runner_id", res.RunnerID)
}

// identify learns the id of a runner whose registration answer was lost,
// by its name; false when there is nothing (known) to remove.
func (s *session) identify(ctx context.Context) bool {
	res, log := s.res, s.log
	if err := s.findRunner(ctx); err != nil {
		res.RunnerRemoved = "unknown"
		log.Error("the registration's answer was lost and GitHub could not be asked about it: a runner may stay listed until a later worker's sweep removes it", "runner", res.RunnerName, "error", errLine(s.redactor, err))
		return false
	}
	if res.RunnerID == 0 && s.uncertain {
		res.RunnerRemoved = "unknown"
		log.Warn("the registration call ended without GitHub's answer and GitHub lists no runner of this name yet: one may still appear, and a later worker's sweep removes it", "runner", res.RunnerName)
		return false
	}
	if res.RunnerID == 0 {
		log.Info("GitHub has no runner of this name: nothing to remove", "runner", res.RunnerName)
		return false
	}
	log.Warn("found the runner whose registration answer was lost", "runner", res.RunnerName, "runner_id", res.RunnerID)
	return true
}
