package jobhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/fitness"
	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/listener"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Result is the job's output.
type Result struct {
	RunnerName string   `json:"runner_name"`
	RunnerID   int64    `json:"runner_id"`
	Scope      string   `json:"scope"`
	Labels     []string `json:"labels"`
	Mode       Mode     `json:"mode"`
	JobRan     bool     `json:"job_ran"`
	JobName    string   `json:"job_name,omitempty"`
	JobResult  string   `json:"job_result,omitempty"`
	// RunnerRemoved is "by GitHub", "by the worker", "no" (with an error),
	// "unknown" (a registration call ended without GitHub's answer, and
	// GitHub could not be asked or lists no runner yet: one may still
	// appear, for a later sweep), RemovedByMinter (a runner from a JIT
	// config that may still be registered: RunnerLeft), or "" (nothing
	// was registered).
	RunnerRemoved string `json:"runner_removed"`
	// RunnerLeft is a runner from a JIT config that may still be
	// registered (it took no job, or was stopped): the side that minted
	// the config removes it (runner_removed is RemovedByMinter).
	RunnerLeft   *LeftRunner `json:"runner_left,omitempty"`
	Restarts     int         `json:"runner_restarts,omitempty"`
	WaitSeconds  float64     `json:"wait_seconds"`
	JobSeconds   float64     `json:"job_seconds"`
	TotalSeconds float64     `json:"total_seconds"`
	// Fitness is what the fitness check measured on the host before the
	// runner started (absent when FITNESS_CHECK=off).
	Fitness *fitness.Report `json:"fitness,omitempty"`
}

// JobError is a failed job with its result (runner, cleanup). It is made
// after cleanup, and its text is fixed then: what failed and what became
// of the runner.
type JobError struct {
	Err    error
	Result *Result
	text   string
}

func newJobError(err error, res *Result) *JobError {
	return &JobError{Err: err, Result: res, text: describe(err, res)}
}

func (e *JobError) Error() string {
	if e.text == "" { // a JobError made elsewhere
		return describe(e.Err, e.Result)
	}
	return e.text
}

func (e *JobError) Unwrap() error { return e.Err }

// describe is err with what became of the runner.
func describe(err error, r *Result) string {
	switch {
	case r == nil || (r.RunnerID == 0 && r.RunnerRemoved == ""):
		return err.Error()
	case r.RunnerLeft != nil:
		return fmt.Sprintf("%v [runner %s, id %d, may still be registered: the worker holds no GitHub credential; the side that minted its JIT config removes it]", err, r.RunnerName, r.RunnerID)
	case r.RunnerID == 0 && r.RunnerRemoved == "unknown":
		return fmt.Sprintf("%v [runner %s, id unknown, removed: unknown: GitHub may still complete the registration, so a runner of this name may still appear; a later worker's sweep removes it]", err, r.RunnerName)
	case r.RunnerID == 0:
		return fmt.Sprintf("%v [runner %s, id unknown, removed: %s]", err, r.RunnerName, r.RunnerRemoved)
	}
	removed := r.RunnerRemoved
	if removed == "" {
		removed = "pending"
	}
	return fmt.Sprintf("%v [runner %s, id %d, removed: %s]", err, r.RunnerName, r.RunnerID, removed)
}

// Handle runs one job: check the host's fitness, open a session (input,
// runner, GitHub client), register the runner, run it, remove it,
// summarise.
func (h *Handler) Handle(ctx context.Context, job *runpod.Job, u runpod.Updater) (any, error) {
	defer h.registrationOver()
	redactor := h.secrets()
	in, err := ParseInput(job.Input, h.getenv)
	switch {
	case err != nil:
		return nil, errors.New(errLine(redactor, err))
	case in.SelfTest:
		return h.selfTest(ctx)
	}
	dropSudo, err := h.jobUser(in, job.ID)
	if err != nil {
		return nil, err
	}
	defer dropSudo()
	report, err := h.fitnessFor(ctx, job.ID, in)
	if err != nil {
		return nil, err
	}
	s, err := h.open(ctx, job.ID, in, redactor)
	if err != nil {
		return nil, err
	}
	defer s.close()
	s.res.Fitness = report
	err = s.register(ctx, u)
	var rr *listener.Result
	if err == nil {
		rr, err = s.run(ctx)
	}
	s.res.TotalSeconds = time.Since(s.start).Seconds()
	s.cleanup()
	return s.summarise(ctx, rr, err)
}

// session is one job from registration to cleanup.
type session struct {
	h        *Handler
	in       *Input
	gh       *github.Client
	log      *slog.Logger
	redactor *secret.Redactor
	res      *Result
	rcfg     listener.Config
	start    time.Time
	jobID    string
	// shutdown outlives a cancel by the grace budget: registration and
	// cleanup run on it; stop ends it.
	shutdown context.Context
	stop     context.CancelFunc
	// minted says the runner came registered in a JIT config (input
	// jitconfig); jitDone that it ran its job to the end.
	minted, jitDone bool
	// registering is set once GitHub may hold the runner: from then on
	// cleanup removes it, by name when its id is unknown. uncertain says
	// the registration call ended without GitHub's answer: a runner may
	// appear after cleanup looked for it. cleaned says cleanup ran.
	registering, uncertain, cleaned bool
}

// open checks that the runner can start and makes the GitHub client:
// nothing is registered yet.
func (h *Handler) open(ctx context.Context, jobID string, in *Input, redactor *secret.Redactor) (*session, error) {
	start := time.Now()
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("request_id", jobID)
	redactor.Add(in.PAT)
	if in.App != nil {
		redactor.Add(in.App.PrivateKey)
	}
	if in.JIT != nil {
		redactor.Add(in.JIT.Encoded)
		redactor.Add(in.JIT.secrets...)
	}
	account := h.account(in.RunnerUser)
	if err := listener.Check(h.runnerRoot(), account); err != nil {
		return nil, notStarted(err, in, log)
	}
	s := &session{h: h, in: in, log: log, redactor: redactor, start: start, jobID: jobID}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	s.rcfg = h.runnerConfig(in, account, redactor, log)
	s.shutdown, s.stop = afterCancel(ctx, h.budget())
	return s, nil
}

// connect makes the GitHub client and the result; a JIT job needs no
// client.
func (s *session) connect(ctx context.Context) error {
	h, in := s.h, s.in
	if in.JIT != nil {
		h.tookJIT.Store(true)
		h.noteIgnored(s.log)
		s.res = jitResult(in)
		return nil
	}
	var err error
	if s.gh, err = h.client(ctx, in, in.Scope, s.redactor, s.log, false); err != nil {
		return errors.New(errLine(s.redactor, err))
	}
	s.res = &Result{Scope: in.Scope.String(), Labels: h.Labels(in.Labels), Mode: in.Mode}
	return nil
}

// account is the system account the runner runs as.
func (h *Handler) account(u User) string {
	if u == UserRunner && h.RunnerAccount != "" {
		return h.RunnerAccount
	}
	return string(u)
}

func (h *Handler) runnerConfig(in *Input, account string, redactor *secret.Redactor, log *slog.Logger) listener.Config {
	return listener.Config{
		Root:        h.runnerRoot(),
		User:        account,
		BaseEnv:     h.environ(),
		Deny:        splitComma(h.getenv(EnvDeny)),
		Allow:       splitComma(h.getenv(EnvAllow)),
		IdleTimeout: in.IdleTimeout,
		JobTimeout:  in.JobTimeout,
		StopGrace:   h.stopGrace(in.JIT != nil),
		Redactor:    redactor,
		Log:         log,
	}
}

// close removes the runner if a step panicked before cleanup, and ends
// the shutdown context.
func (s *session) close() {
	s.cleanup()
	s.stop()
}

// register registers the runner in the runner group and tells RunPod; a
// cancel meanwhile fails the job (cleanup then removes the runner).
func (s *session) register(ctx context.Context, u runpod.Updater) error {
	s.rcfg.OnLine = func(line string) {
		s.log.Info("runner", "line", line)
		u.Stream(line)
	}
	if s.in.JIT != nil {
		return s.startJIT(u)
	}
	groupID, err := s.gh.RunnerGroupID(ctx, s.in.RunnerGroup)
	if err != nil {
		return err
	}
	err = s.registerRunner(ctx, groupID)
	s.h.registrationOver()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("cancelled (%v) while the runner was being registered", context.Cause(ctx))
	}
	res := s.res
	s.log.Info("runner registered", "runner", res.RunnerName, "runner_id", res.RunnerID, "scope", res.Scope, "labels", strings.Join(res.Labels, ","), "mode", s.in.Mode)
	u.Progress(map[string]any{"stage": "registered", "runner_name": res.RunnerName, "runner_id": res.RunnerID, "labels": res.Labels})
	return nil
}

// run runs the registered runner until its job ends and records what
// it did.
func (s *session) run(ctx context.Context) (*listener.Result, error) {
	rr, err := listener.Run(ctx, s.rcfg)
	if rr == nil {
		return nil, err
	}
	res := s.res
	res.JobRan, res.JobName, res.JobResult, res.Restarts = rr.JobStarted, rr.JobName, rr.JobResult, rr.Restarts
	s.jitDone = rr.JobCompleted && !rr.Cancelled && !rr.JobTimedOut
	if rr.JobStarted {
		res.WaitSeconds = rr.JobStartedAt.Sub(rr.Started).Seconds()
		res.JobSeconds = rr.Ended.Sub(rr.JobStartedAt).Seconds()
	} else {
		res.WaitSeconds = rr.Ended.Sub(rr.Started).Seconds()
	}
	return rr, err
}

// summarise is the job's answer once the runner is gone: the result, or
// a JobError saying what failed and what became of the runner.
func (s *session) summarise(ctx context.Context, rr *listener.Result, err error) (any, error) {
	if err == nil {
		err = s.outcome(ctx, rr)
	}
	if err != nil {
		return nil, newJobError(errors.New(errLine(s.redactor, err)), s.res)
	}
	return s.res, nil
}

// outcome is the failure the runner's result means, if any.
func (s *session) outcome(ctx context.Context, rr *listener.Result) error {
	switch {
	case rr == nil:
		return errors.New("the runner did not run")
	case rr.IdleTimedOut && s.minted:
		return fmt.Errorf("no workflow job was assigned within idle_timeout %v: check that a queued job's runs-on matches the labels the JIT config was minted with", s.in.IdleTimeout)
	case rr.IdleTimedOut:
		return fmt.Errorf("no workflow job was assigned within idle_timeout %v: check that a queued job's runs-on matches these labels: %s", s.in.IdleTimeout, strings.Join(s.res.Labels, ", "))
	case rr.JobTimedOut:
		return fmt.Errorf("the workflow job %q ran longer than job_timeout %v and was stopped", rr.JobName, s.in.JobTimeout)
	case rr.Cancelled:
		return fmt.Errorf("cancelled (%v): the runner was stopped", context.Cause(ctx))
	case !rr.JobStarted:
		return fmt.Errorf("the runner exited (code %d) without running a job", rr.ExitCode)
	}
	return nil
}
