package scaler

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"

	"github.com/runpod-workers/worker-github_runner/internal/dispatch"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// gitHub is what a scale set needs of the scale-set service
// (*scaleset.Client).
type gitHub interface {
	GenerateJitRunnerConfig(ctx context.Context, s *scaleset.RunnerScaleSetJitRunnerSetting, scaleSetID int) (*scaleset.RunnerScaleSetJitRunnerConfig, error)
	RemoveRunner(ctx context.Context, runnerID int64) error
	GetRunnerByName(ctx context.Context, name string) (*scaleset.RunnerReference, error)
}

// set runs one scale set: it is the listener's Scaler (which only records
// what GitHub says) and an actuator goroutine that does the work: starts
// runners up to the target, and makes sure both sides of a runner are
// gone once it is done.
type set struct {
	cfg         ScaleSetConfig
	id          int // the scale set's id at GitHub
	gh          gitHub
	rp          *dispatch.Client
	state       *stateFile
	log         *slog.Logger
	m           *metrics
	check       time.Duration // how often a runner's RunPod job is looked at
	finishGrace time.Duration // how long a worker gets to end after its job completed
	unfitHold   time.Duration // no runner starts this long after one was given up as unfit
	backoff     time.Duration // the first hold after a runner's job failed before it got a job
	exec, ttl   time.Duration // the RunPod jobs' policy

	wake chan struct{}

	mu       sync.Mutex
	runners  []*runner
	target   int // targetLocked, as last computed
	assigned int // statistics.totalAssignedJobs
	capa     capacity
	busy     int       // GitHub's count of the scale set's busy runners
	regd     int       // GitHub's count of the scale set's registered runners
	statsAt  time.Time // when busy and regd arrived
	// dropped: when runners no longer in the list were removed from
	// GitHub, while the statistics may still count them (foreignLocked).
	dropped []time.Time
	status  string // for /healthz
	saveErr error  // the last save of the state file failed: no runner starts
	// holdUntil: no runner starts before then (a runner was given up
	// after its jobs kept failing on unfit workers, or crashed).
	holdUntil time.Time
	crashes   int // runners in a row whose RunPod job failed before they got a job

	rest         restRunners         // GitHub's REST runner list; nil: no orphan reconcile
	reconciledAt time.Time           // the last reconcile (orphans.go)
	seen         map[int64]time.Time // foreign runners listed: when first seen
}

func newSet(cfg ScaleSetConfig, id int, gh gitHub, rp *dispatch.Client, st *stateFile, log *slog.Logger, m *metrics, check time.Duration, o Options) (*set, error) {
	exec, ttl, err := dispatch.Policy(cfg.IdleTimeout, cfg.JobTimeout)
	if err != nil {
		return nil, err
	}
	s := &set{cfg: cfg, id: id, gh: gh, rp: rp, state: st, log: log, m: m, check: check, finishGrace: o.FinishGrace,
		unfitHold: o.UnfitHold, backoff: o.CrashBackoff, exec: exec, ttl: ttl, wake: make(chan struct{}, 1), status: "starting"}
	for _, r := range st.load(cfg.Name) {
		r.checked = time.Time{} // look at every runner at once
		s.runners = append(s.runners, &r)
	}
	if n := len(s.runners); n > 0 {
		log.Info("runners from the state file, to check", "count", n)
	}
	return s, nil
}

var _ listener.Scaler = (*set)(nil)
var _ listener.MetricsRecorder = (*set)(nil)

func (s *set) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// HandleDesiredRunnerCount records the target: min_runners + the jobs
// assigned, at most the capacity (max_runners, or less: updateCapacity).
func (s *set) HandleDesiredRunnerCount(_ context.Context, assigned int) (int, error) {
	s.mu.Lock()
	s.assigned = assigned
	s.target = s.targetLocked()
	t := s.target
	s.mu.Unlock()
	s.poke()
	return t, nil
}

// HandleJobStarted marks the runner busy: it is no longer idle.
func (s *set) HandleJobStarted(_ context.Context, j *scaleset.JobStarted) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.find(j.RunnerName); r != nil {
		r.Busy = true
		s.crashes = 0
		s.saveLocked()
	}
	s.log.Info("job started", "runner", j.RunnerName, "job", j.JobDisplayName, "request_id", j.RunnerRequestID)
	return nil
}

// HandleJobCompleted marks the runner done; the actuator cleans up. A
// re-offered job (canceled, no runner) needs nothing: the target follows
// the statistics.
func (s *set) HandleJobCompleted(_ context.Context, j *scaleset.JobCompleted) error {
	s.mu.Lock()
	if r := s.find(j.RunnerName); r != nil && r.Done.IsZero() {
		r.Done = time.Now()
		s.saveLocked()
	}
	s.mu.Unlock()
	s.log.Info("job completed", "runner", j.RunnerName, "result", j.Result, "request_id", j.RunnerRequestID)
	s.poke()
	return nil
}

// The listener's metrics hooks.
func (s *set) RecordStatistics(st *scaleset.RunnerScaleSetStatistic) {
	if st != nil {
		s.mu.Lock()
		s.busy, s.regd, s.statsAt = st.TotalBusyRunners, st.TotalRegisteredRunners, time.Now()
		s.mu.Unlock()
		s.m.set("runpod_scaler_assigned_jobs", float64(st.TotalAssignedJobs), "scale_set", s.cfg.Name)
		s.m.set("runpod_scaler_running_jobs", float64(st.TotalRunningJobs), "scale_set", s.cfg.Name)
	}
}
func (s *set) RecordJobStarted(*scaleset.JobStarted) {
	s.m.add("runpod_scaler_jobs_started_total", 1, "scale_set", s.cfg.Name)
}
func (s *set) RecordJobCompleted(j *scaleset.JobCompleted) {
	s.m.add("runpod_scaler_jobs_completed_total", 1, "scale_set", s.cfg.Name, "result", j.Result)
}
func (s *set) RecordDesiredRunners(n int) {
	s.m.set("runpod_scaler_desired_runners", float64(n), "scale_set", s.cfg.Name)
}

func (s *set) find(name string) *runner {
	if name == "" {
		return nil
	}
	for _, r := range s.runners {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// saveLocked writes the scale set's runners to the state file and
// reports whether it could. While it cannot, no runner starts (scaleUp):
// a runner the file does not list would be lost at the next restart.
func (s *set) saveLocked() bool {
	rs := make([]runner, len(s.runners))
	for i, r := range s.runners {
		rs[i] = *r
	}
	err := s.state.save(s.cfg.Name, rs)
	switch {
	case err != nil && s.saveErr == nil:
		s.apiError("state", "save")
		s.log.Error("cannot save the state file: no runner starts until it can be saved "+
			"(a restart would not find runners it does not list)", errAttr(err))
	case err == nil && s.saveErr != nil:
		s.log.Info("the state file can be saved again")
	}
	s.saveErr = err
	return err == nil
}

// setStatus records the scale set's state; once the message session
// opens, the runners are reconciled at once (maybeReconcile).
func (s *set) setStatus(st string) {
	s.mu.Lock()
	if st == "listening" && s.status != st {
		s.reconciledAt = time.Time{}
		defer s.poke()
	}
	s.status = st
	s.mu.Unlock()
}

// actuate works until ctx ends: at each wake-up or check interval it
// checks the runners, then starts those the target needs.
func (s *set) actuate(ctx context.Context) {
	t := time.NewTicker(s.check)
	defer t.Stop()
	for {
		s.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

func (s *set) step(ctx context.Context) {
	s.updateCapacity(ctx)
	s.checkRunners(ctx)
	s.maybeReconcile(ctx)
	s.scaleUp(ctx)
	s.publish()
}

// live counts the runners that may hold a RunPod job. Call with s.mu held.
func (s *set) liveLocked() int {
	n := 0
	for _, r := range s.runners {
		if r.live() {
			n++
		}
	}
	return n
}

// foreignLocked counts the runners GitHub reports beyond those this
// scaler knows: runners another scaler started (one that stopped without
// leaving its state here), busy or still waiting for a worker in RunPod's
// queue. They may hold RunPod workers too, so they count against
// max_runners until GitHub no longer lists them: the larger of the
// registered and the busy runners GitHub counts beyond ours. A runner
// of ours removed shortly before the statistics arrived (statsLag) may
// still be in them: it counts as ours, else it would hold a waiting job's
// runner back until GitHub's next message. Call with s.mu held.
func (s *set) foreignLocked() int {
	since := s.statsAt.Add(-statsLag)
	regd, busy := 0, 0
	for _, r := range s.runners {
		if r.Gone && !r.goneAt.After(since) {
			continue
		}
		regd++
		if r.Busy && r.Done.IsZero() {
			busy++
		}
	}
	s.dropped = slices.DeleteFunc(s.dropped, func(t time.Time) bool { return !t.After(since) })
	regd += len(s.dropped)
	return max(s.regd-regd, s.busy-busy, 0)
}

func (s *set) scaleUp(ctx context.Context) {
	s.mu.Lock()
	need := s.target - s.liveLocked() - s.foreignLocked()
	if time.Now().Before(s.holdUntil) || s.saveErr != nil && !s.saveLocked() {
		need = 0
	}
	s.mu.Unlock()
	for range need {
		if ctx.Err() != nil {
			return
		}
		if err := s.start(ctx); err != nil {
			s.log.Error("cannot start a runner; trying again at the next check", errAttr(err))
			return
		}
	}
}

// runnerName is a fresh runner's name: the scale set's name, 8 random
// hex digits and the time (Unix seconds, base 36), by which another
// scaler tells an orphan's age (orphans.go).
func (s *set) runnerName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return s.cfg.Name + "-" + hex.EncodeToString(b) + "-" + strconv.FormatInt(time.Now().Unix(), 36)
}

// start mints a runner and submits its RunPod job.
func (s *set) start(ctx context.Context) error {
	name := s.runnerName()
	jit, err := s.gh.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: name, WorkFolder: "_work"}, s.id)
	if err != nil {
		s.apiError("github", "generate-jitconfig")
		s.forget(ctx, name)
		return fmt.Errorf("mint runner %s: %w", name, err)
	}
	r := &runner{Name: name, ID: jit.Runner.ID, Created: time.Now(), jit: secret.New(jit.EncodedJITConfig)}
	s.mu.Lock()
	s.runners = append(s.runners, r)
	if !s.saveLocked() {
		r.Ended = true // no RunPod job: the checks remove the runner
		err := s.saveErr
		s.mu.Unlock()
		return fmt.Errorf("runner %s not started: %w", name, err)
	}
	s.mu.Unlock()
	if err := s.submit(ctx, r); err != nil {
		return fmt.Errorf("submit the RunPod job of runner %s: %w", name, err)
	}
	s.m.add("runpod_scaler_runners_started_total", 1, "scale_set", s.cfg.Name)
	s.log.Info("runner started", "runner", name, "runner_id", r.ID, "runpod_job", r.Job)
	return nil
}

// submit sends r's RunPod job: its JIT config and name, and the scale
// set's runner user and timeouts; always the same input for a runner. A
// runner whose job was refused, or may have been created (the answer was
// lost), is withdrawn from GitHub, which also makes such a job harmless:
// its runner cannot connect, so it ends at once. /run is never sent twice.
func (s *set) submit(ctx context.Context, r *runner) error {
	s.mu.Lock()
	name, jit := r.Name, r.jit
	s.mu.Unlock()
	in := dispatch.JITInput(jit, name, dispatch.JITOptions{RunnerUser: s.cfg.RunnerUser, IdleTimeout: s.cfg.IdleTimeout, JobTimeout: s.cfg.JobTimeout})
	j, err := s.rp.Submit(ctx, in, s.exec, s.ttl)
	if err == nil {
		s.mu.Lock()
		r.Job, r.Status = j.ID, string(jobapi.InQueue)
		s.saveLocked()
		s.mu.Unlock()
		return nil
	}
	s.apiError("runpod", "run")
	s.mu.Lock()
	r.Job = ""
	r.Unsure = dispatch.MaybeCreated(err)
	r.Ended = !r.Unsure // RunPod refused it: no job holds a worker
	s.mu.Unlock()
	s.withdraw(ctx, r)
	return err
}

// forget removes a runner whose minting failed but may have happened (an
// answer lost, then the retry refused as a duplicate name): nobody would
// ever start it, and it would stay registered.
func (s *set) forget(ctx context.Context, name string) {
	ref, err := s.gh.GetRunnerByName(ctx, name)
	if err != nil || ref == nil {
		return
	}
	if err := s.gh.RemoveRunner(ctx, int64(ref.ID)); err != nil && !errors.Is(err, scaleset.RunnerNotFoundError) {
		s.log.Error("cannot remove a runner whose minting failed; GitHub drops it after a while", "runner", name, errAttr(err))
	}
}

// withdraw removes a runner whose RunPod job was not (or may not have
// been) created. If it is busy, the job was created and runs: it stays.
func (s *set) withdraw(ctx context.Context, r *runner) {
	switch err := s.removeRunner(ctx, r); {
	case err == nil:
		s.mu.Lock()
		r.Ended = true
		s.mu.Unlock()
	case errors.Is(err, scaleset.JobStillRunningError):
		s.log.Warn("runner whose RunPod job seemed lost is running a job: keeping it", "runner", r.Name)
	default:
		s.log.Error("cannot remove runner; trying again at the next check", "runner", r.Name, errAttr(err))
	}
}

// removeRunner removes a runner from GitHub; one GitHub no longer lists
// counts as removed.
func (s *set) removeRunner(ctx context.Context, r *runner) error {
	err := s.gh.RemoveRunner(ctx, int64(r.ID))
	if err == nil || errors.Is(err, scaleset.RunnerNotFoundError) {
		s.mu.Lock()
		if !r.Gone {
			r.goneAt = time.Now()
		}
		r.Gone = true
		s.mu.Unlock()
		return nil
	}
	if errors.Is(err, scaleset.JobStillRunningError) {
		s.mu.Lock()
		r.Busy = true
		s.mu.Unlock()
		return err
	}
	s.apiError("github", "remove-runner")
	return err
}

func (s *set) apiError(api, op string) {
	s.m.add("runpod_scaler_api_errors_total", 1, "scale_set", s.cfg.Name, "api", api, "op", op)
}

// checkRunners looks at each runner and drops those gone on both sides.
func (s *set) checkRunners(ctx context.Context) {
	s.mu.Lock()
	rs := slices.Clone(s.runners)
	excess := s.liveLocked() - s.target
	s.mu.Unlock()
	for _, r := range rs {
		if ctx.Err() != nil {
			return
		}
		if s.checkOne(ctx, r, excess > 0) {
			excess--
		}
	}
	s.mu.Lock()
	n := len(s.runners)
	s.runners = slices.DeleteFunc(s.runners, func(r *runner) bool {
		if r.Ended && r.Gone && !r.goneAt.IsZero() && len(s.dropped) < maxRunnersCap {
			s.dropped = append(s.dropped, r.goneAt)
		}
		return r.Ended && r.Gone
	})
	if len(s.runners) != n {
		s.saveLocked()
	}
	s.mu.Unlock()
}

// checkOne brings one runner forward; it reports whether it scaled the
// runner down (an idle runner beyond the target, past the idle timeout).
func (s *set) checkOne(ctx context.Context, r *runner, excess bool) bool {
	s.mu.Lock()
	v := *r
	s.mu.Unlock()
	now := time.Now()
	idle := !v.Busy && v.Done.IsZero() && now.Sub(v.Created) > s.cfg.IdleTimeout
	switch {
	case !v.Ended && v.Job != "" && (!v.Done.IsZero() || now.Sub(v.checked) >= s.check):
		s.checkJob(ctx, r, v)
	case !v.Ended && v.Job == "" && (v.Gone || !v.Done.IsZero()):
		// No RunPod job is known (the answer to /run was lost): once the
		// runner is gone, any such job ends by itself.
		s.mu.Lock()
		r.Ended = true
		s.mu.Unlock()
	}
	s.mu.Lock()
	v = *r
	s.mu.Unlock()
	switch {
	case v.Gone:
	case v.Ended || !v.Done.IsZero() || v.Job == "" && idle:
		if err := s.removeRunner(ctx, r); err == nil {
			s.mu.Lock()
			r.Ended = r.Ended || r.Job == ""
			s.mu.Unlock()
		}
	case idle && excess && !v.Ended:
		s.log.Info("scaling down an idle runner", "runner", v.Name, "idle_for", now.Sub(v.Created).Round(time.Second))
		if err := s.removeRunner(ctx, r); err == nil {
			s.mu.Lock()
			r.Cancel = true
			s.saveLocked()
			s.mu.Unlock()
			s.cancel(ctx, r)
			return true
		}
	}
	return false
}

// checkJob asks RunPod about a runner's job; a job still running a grace
// period after its runner's job completed is cancelled, one that failed
// on an unfit worker goes to unfit.
func (s *set) checkJob(ctx context.Context, r *runner, v runner) {
	j, err := s.rp.Status(ctx, v.Job)
	s.mu.Lock()
	r.checked = time.Now()
	s.mu.Unlock()
	var st jobapi.Status
	switch {
	case dispatch.NotFound(err) && s.endpointAnswers(ctx, v):
		st = "GONE"
	case err != nil:
		s.apiError("runpod", "status")
		s.log.Warn("cannot ask RunPod about a runner's job", "runner", v.Name, "runpod_job", v.Job, errAttr(err))
		return
	default:
		st = j.Status
	}
	if st == jobapi.Failed && !v.Busy && v.Done.IsZero() {
		if rep, ok := jobapi.ParseErrorReport(j.Error); ok {
			s.unfit(ctx, r, j, rep)
			return
		}
	}
	s.mu.Lock()
	r.Status = string(st)
	ended := st == "GONE" || st.Terminal()
	if ended && !r.Ended {
		r.Ended = true
		if st == jobapi.Failed && !v.Busy && v.Done.IsZero() && !v.Cancel {
			s.crashedLocked(v, j)
		}
		if r.Done.IsZero() {
			r.Done = time.Now()
		}
		s.saveLocked()
	}
	s.mu.Unlock()
	if !ended && v.Cancel {
		s.log.Info("cancelling the RunPod job of a scaled-down runner again", "runner", v.Name, "runpod_job", v.Job)
		s.cancel(ctx, r)
	} else if !ended && !v.Done.IsZero() && time.Since(v.Done) > s.finishGrace {
		s.log.Warn("the worker did not end its RunPod job after the runner's job completed: cancelling it", "runner", v.Name, "runpod_job", v.Job)
		s.cancel(ctx, r)
	}
}

// endpointAnswers tells a job RunPod forgot from an endpoint that does
// not exist (or a wrong endpoint id): both answer 404, so the endpoint's
// /health must answer before the job counts as gone.
func (s *set) endpointAnswers(ctx context.Context, v runner) bool {
	if _, err := s.rp.Health(ctx); err != nil {
		s.log.Error("RunPod does not know a runner's job, and the endpoint's /health fails too: keeping the runner "+
			"(check the endpoint id)", "runner", v.Name, "runpod_job", v.Job, errAttr(err))
		return false
	}
	return true
}

// unfit handles a runner's RunPod job that failed on an unfit worker
// (jobapi.ParseErrorReport): the worker's fitness check failed before the
// runner started, so its JIT config is unused. The same input is
// submitted again, up to unfit_retries times; then the runner is removed
// (the normal checks do it), and the scale set starts no runner for
// UnfitHold, after which the target starts a fresh one if jobs still wait.
// A runner from the state file has no JIT config (it is not kept): it is
// removed at once.
func (s *set) unfit(ctx context.Context, r *runner, j *dispatch.Job, rep *jobapi.ErrorReport) {
	s.mu.Lock()
	r.Unfit++
	n, name, jit := r.Unfit, r.Name, r.jit
	s.mu.Unlock()
	attrs := []any{"runner", name, "runpod_job", j.ID, "worker", jobapi.OneLine(cmp.Or(j.WorkerID, rep.WorkerID, "unknown"), 64),
		"problems", strings.Join(rep.Problems(), "; "), "keep_worker", rep.KeepWorker}
	if n <= s.cfg.UnfitRetries && !jit.Empty() {
		s.m.add("runpod_scaler_unfit_total", 1, "scale_set", s.cfg.Name, "action", "resubmitted")
		s.log.Warn(fmt.Sprintf("the runner's RunPod job failed on an unfit worker before the runner started; "+
			"submitting the same job again (unfit retry %d of %d)", n, s.cfg.UnfitRetries), attrs...)
		if err := s.submit(ctx, r); err != nil {
			s.log.Error("cannot submit the runner's job again: removing the runner", "runner", name, errAttr(err))
			return
		}
		s.log.Info("runner's job submitted again", "runner", name, "runpod_job", r.Job)
		return
	}
	why := fmt.Sprintf("on each of %d attempts, unfit_retries is %d", n, s.cfg.UnfitRetries)
	if jit.Empty() && n <= s.cfg.UnfitRetries {
		why = "its JIT config is not kept across restarts, so its job cannot be submitted again"
	}
	s.giveUpUnfit(r, why, rep.KeepWorker, attrs)
}

// giveUpUnfit marks a runner whose job failed on an unfit worker ended,
// so the checks remove it, and holds the scale set's start of runners.
func (s *set) giveUpUnfit(r *runner, why string, keepWorker bool, attrs []any) {
	hint := "broken hosts: RunPod replaces such workers; if it keeps happening, check the endpoint's GPU types against the image's CUDA version and its FITNESS_* settings"
	if keepWorker {
		hint = "sound workers without the GPUs the job asks for: the endpoint's FITNESS_GPU_COUNT or FITNESS_MIN_GPU_MEMORY_MB ask for more than its GPU types have"
	}
	s.m.add("runpod_scaler_unfit_total", 1, "scale_set", s.cfg.Name, "action", "removed")
	s.log.Error(fmt.Sprintf("the runner's RunPod job failed on an unfit worker (%s): removing the runner; the scale set starts "+
		"no runner for %v", why, s.unfitHold), append(attrs, "hint", hint)...)
	s.mu.Lock()
	r.Ended, r.Status = true, string(jobapi.Failed)
	s.holdUntil = time.Now().Add(s.unfitHold)
	s.saveLocked()
	s.mu.Unlock()
}

// cancel cancels a runner's RunPod job (one RunPod forgot counts as
// cancelled).
func (s *set) cancel(ctx context.Context, r *runner) {
	s.mu.Lock()
	id := r.Job
	s.mu.Unlock()
	if id != "" {
		if _, err := s.rp.Stop(ctx, id); err != nil {
			s.apiError("runpod", "cancel")
			s.log.Error("cannot cancel RunPod job; trying again at the next check", "runpod_job", id, errAttr(err))
			return
		}
	}
	s.mu.Lock()
	r.Ended, r.Status = true, string(jobapi.Cancelled)
	s.saveLocked()
	s.mu.Unlock()
}

// publish sets the runner gauges.
func (s *set) publish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	states := map[string]int{"starting": 0, "idle": 0, "busy": 0, "finishing": 0}
	jobs := map[string]int{}
	for _, r := range s.runners {
		switch {
		case !r.Done.IsZero() || r.Ended:
			states["finishing"]++
		case r.Busy:
			states["busy"]++
		case r.Job == "" || r.Status == string(jobapi.InQueue):
			states["starting"]++
		default:
			states["idle"]++
		}
		if r.live() && r.Status != "" {
			jobs[r.Status]++
		}
	}
	for st, n := range states {
		s.m.set("runpod_scaler_runners", float64(n), "scale_set", s.cfg.Name, "state", st)
	}
	s.m.reset("runpod_scaler_runpod_jobs", fmt.Sprintf("scale_set=%q", s.cfg.Name))
	for st, n := range jobs {
		s.m.set("runpod_scaler_runpod_jobs", float64(n), "scale_set", s.cfg.Name, "status", st)
	}
}

// snapshot returns copies of the runners (tests, /healthz).
func (s *set) snapshot() []runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]runner, len(s.runners))
	for i, r := range s.runners {
		out[i] = *r
	}
	return out
}

// statsLag is how long before GitHub's statistics arrive a runner's
// removal may not be in them yet.
const statsLag = 10 * time.Second

// MaxCrashBackoff bounds the hold after runners' jobs kept failing.
const MaxCrashBackoff = 5 * time.Minute

// crashedLocked records a runner whose RunPod job failed before the
// runner got a job, for a reason other than an unfit worker (a broken
// image, a worker that crashes at start): no runner starts for the
// backoff, doubled for each such runner in a row, up to MaxCrashBackoff;
// a runner that gets a job ends the streak. Call with s.mu held.
func (s *set) crashedLocked(v runner, j *dispatch.Job) {
	s.crashes++
	hold := MaxCrashBackoff
	if s.crashes <= 16 {
		hold = min(s.backoff<<(s.crashes-1), MaxCrashBackoff)
	}
	s.holdUntil = maxTime(s.holdUntil, time.Now().Add(hold))
	s.m.add("runpod_scaler_runner_failures_total", 1, "scale_set", s.cfg.Name)
	s.log.Warn(fmt.Sprintf("a runner's RunPod job failed before the runner got a job: backing off, no runner starts for %v", hold),
		"runner", v.Name, "runpod_job", v.Job, "failures_in_a_row", s.crashes, "error", jobapi.OneLine(j.Error, 300),
		"hint", "check the endpoint's worker logs (image, start command, environment)")
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
