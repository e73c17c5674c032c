package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/platform"
	"github.com/runpod-workers/worker-github_runner/internal/runner"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Handler is the runpod.Handler that runs one GitHub Actions job per
// RunPod job.
type Handler struct {
	Getenv     func(string) string // nil: os.Getenv
	Environ    func() []string     // the runner's starting environment; nil: os.Environ
	RunnerRoot string              // default /actions-runner
	PodID      string
	Log        *slog.Logger
	HTTP       *http.Client
	// Flavour and CUDA label the runner; default WORKER_FLAVOUR and
	// WORKER_CUDA_VERSION, which the image sets.
	Flavour, CUDA string
	// GitHubBackoff is the first wait between GitHub retries (default 1 s).
	GitHubBackoff time.Duration
	// StopGrace is how long the runner gets to stop after SIGTERM before
	// SIGKILL (default 10 s, or half the cancel budget if less).
	StopGrace time.Duration
	// CleanupTimeout bounds removing the runner from GitHub (default 2 min).
	CleanupTimeout time.Duration
	// RunnerAccount is the unprivileged account runner_user "runner" means
	// (default "runner", which the image creates).
	RunnerAccount string
	// Grace is what the worker gives a cancelled job to return and post
	// its result (runpod.Options.Grace; default 25 s). Stopping the runner,
	// finishing a registration in flight and removing the runner all fit
	// in it, with a fifth (at least 2 s) kept for posting the result.
	Grace time.Duration

	gateOnce, openOnce sync.Once
	gate               chan struct{} // closed when the first job's registration is over
}

// Registered is closed once the first job's registration is over (the
// runner registered, or the registration failed, or the job ended before
// one): from then on a sweep no longer competes with it for GitHub's
// rate limit.
func (h *Handler) Registered() <-chan struct{} {
	h.gateOnce.Do(func() { h.gate = make(chan struct{}) })
	return h.gate
}

func (h *Handler) registrationOver() {
	h.Registered()
	h.openOnce.Do(func() { close(h.gate) })
}

// Result is the job's output.
type Result struct {
	RunnerName string   `json:"runner_name"`
	RunnerID   int64    `json:"runner_id"`
	Scope      string   `json:"scope"`
	Labels     []string `json:"labels"`
	Mode       string   `json:"mode"`
	JobRan     bool     `json:"job_ran"`
	JobName    string   `json:"job_name,omitempty"`
	JobResult  string   `json:"job_result,omitempty"`
	// RunnerRemoved is "by GitHub", "by the worker", "no" (with an error),
	// "unknown" (a registration call ended without GitHub's answer, and
	// GitHub could not be asked or lists no runner yet: one may still
	// appear, for a later sweep), or "" (nothing was registered).
	RunnerRemoved string  `json:"runner_removed"`
	Restarts      int     `json:"runner_restarts,omitempty"`
	WaitSeconds   float64 `json:"wait_seconds"`
	JobSeconds    float64 `json:"job_seconds"`
	TotalSeconds  float64 `json:"total_seconds"`
}

// JobError is a failed job with the result so far (runner, cleanup).
type JobError struct {
	Err    error
	Result *Result
}

// Error says what failed and what became of the runner; cleanup runs after
// the error is made, so this reads the result when the error is printed.
func (e *JobError) Error() string {
	r := e.Result
	switch {
	case r == nil || (r.RunnerID == 0 && r.RunnerRemoved == ""):
		return e.Err.Error()
	case r.RunnerID == 0 && r.RunnerRemoved == "unknown":
		return fmt.Sprintf("%v [runner %s, id unknown, removed: unknown: GitHub may still complete the registration, so a runner of this name may still appear; a later worker's sweep removes it]", e.Err, r.RunnerName)
	case r.RunnerID == 0:
		return fmt.Sprintf("%v [runner %s, id unknown, removed: %s]", e.Err, r.RunnerName, r.RunnerRemoved)
	}
	removed := r.RunnerRemoved
	if removed == "" {
		removed = "pending"
	}
	return fmt.Sprintf("%v [runner %s, id %d, removed: %s]", e.Err, r.RunnerName, r.RunnerID, removed)
}
func (e *JobError) Unwrap() error { return e.Err }

func (h *Handler) getenv(k string) string {
	if h.Getenv != nil {
		return h.Getenv(k)
	}
	return os.Getenv(k)
}

var nameSafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// RunnerName is unique per pod, job and second, within GitHub's 64
// characters: runpod-<pod>-<job>-t<unix seconds>, at the time the
// registration call starts. GitHub's runner list has no creation time;
// the name carries it, so a later worker can tell a runner a killed
// worker left (see Sweep).
func RunnerName(podID, jobID string, at time.Time) string {
	stamp := fmt.Sprintf("-t%010d", at.Unix())
	body := nameSafe.ReplaceAllString(podID, "-") + "-" + nameSafe.ReplaceAllString(jobID, "-")
	if room := 64 - len("runpod-") - len(stamp); len(body) > room {
		sum := sha256.Sum256([]byte(podID + "/" + jobID))
		body = body[:room-13] + "-" + hex.EncodeToString(sum[:])[:12]
	}
	return "runpod-" + body + stamp
}

var ownRunner = regexp.MustCompile(`^runpod-[A-Za-z0-9._-]+-t([0-9]{10})$`)

// runnerBorn reads the time in a name RunnerName made.
func runnerBorn(name string) (time.Time, bool) {
	m := ownRunner.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return time.Unix(n, 0), true
}

// OwnLabel marks the runners this worker registers: the sweep removes
// only runners that carry it (and the worker's naming scheme).
const OwnLabel = "wgr-ephemeral"

// Labels are what the runner advertises: JIT adds no defaults, so
// self-hosted, linux and the architecture come first.
func (h *Handler) Labels(extra []string) []string {
	p, _ := platform.ByGOARCH(runtime.GOARCH)
	arch := p.RunnerArch
	flavour := h.Flavour
	if flavour == "" {
		flavour = h.getenv("WORKER_FLAVOUR")
	}
	cuda := h.CUDA
	if cuda == "" {
		cuda = h.getenv("WORKER_CUDA_VERSION")
	}
	ls := []string{"self-hosted", "linux", arch, "runpod", OwnLabel}
	if h.PodID != "" {
		ls = append(ls, nameSafe.ReplaceAllString(h.PodID, "-"))
	}
	if flavour != "" {
		ls = append(ls, flavour)
	}
	if cuda != "" {
		ls = append(ls, "cuda-"+cuda)
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range append(ls, extra...) {
		if l != "" && !seen[strings.ToLower(l)] {
			seen[strings.ToLower(l)] = true
			out = append(out, l)
		}
	}
	return out
}

// Handle runs one job.
func (h *Handler) Handle(ctx context.Context, job *runpod.Job, u runpod.Updater) (any, error) {
	start := time.Now()
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("request_id", job.ID)
	defer h.registrationOver()
	redactor := h.secrets()
	in, err := ParseInput(job.Input, h.getenv)
	if err != nil {
		return nil, errors.New(errLine(redactor, err))
	}
	if in.SelfTest {
		return h.selfTest()
	}
	redactor.Add(in.PAT)
	if in.App != nil {
		redactor.Add(in.App.PrivateKey)
	}
	account := in.RunnerUser
	if account == "runner" && h.RunnerAccount != "" {
		account = h.RunnerAccount
	}
	if err := checkRunner(h.runnerRoot(), account); err != nil {
		return nil, err
	}
	gh, err := h.client(ctx, in, in.Scope, redactor, log)
	if err != nil {
		return nil, errors.New(errLine(redactor, err))
	}
	shutdown, stop := afterCancel(ctx, h.budget())
	defer stop()
	s := &session{h: h, in: in, gh: gh, log: log, redactor: redactor, start: start, shutdown: shutdown, jobID: job.ID, res: &Result{
		Scope:  in.Scope.String(),
		Labels: h.Labels(in.Labels),
		Mode:   in.Mode,
	}}
	defer s.cleanup()
	return s.run(ctx, u, account)
}

// client is a GitHub client for scope with the input's credential; a
// GitHub App's installation token is minted here.
func (h *Handler) client(ctx context.Context, in *Input, scope github.Scope, redactor *secret.Redactor, log *slog.Logger) (*github.Client, error) {
	o := github.Options{APIURL: in.APIURL, Token: in.PAT, HTTP: h.HTTP, Log: log, TestOnlyAllowLoopbackHTTP: in.TestOnlyAllowLoopbackHTTP}
	if o.Token.Empty() && in.App != nil {
		tok, err := github.InstallationToken(ctx, o, *in.App)
		if err != nil {
			return nil, err
		}
		redactor.Add(tok)
		o.Token = tok
	}
	gh, err := github.NewClient(scope, o)
	if err == nil && h.GitHubBackoff > 0 {
		gh.Backoff = h.GitHubBackoff
		gh.MaxWait = 20 * h.GitHubBackoff
	}
	return gh, err
}

// session is one job from registration to cleanup.
type session struct {
	h        *Handler
	in       *Input
	gh       *github.Client
	log      *slog.Logger
	redactor *secret.Redactor
	res      *Result
	start    time.Time
	// shutdown outlives a cancel by the grace budget: registration and
	// cleanup run on it.
	shutdown context.Context
	jobID    string
	// registering is set once GitHub may hold the runner: from then on
	// cleanup removes it, by name when its id is unknown. uncertain says
	// the registration call ended without GitHub's answer: a runner may
	// appear after cleanup looked for it.
	registering, uncertain bool
}

func (s *session) fail(err error) (any, error) {
	s.res.TotalSeconds = time.Since(s.start).Seconds()
	return nil, &JobError{Err: errors.New(errLine(s.redactor, err)), Result: s.res}
}

func (s *session) run(ctx context.Context, u runpod.Updater, account string) (any, error) {
	groupID, err := s.gh.RunnerGroupID(ctx, s.in.RunnerGroup)
	if err != nil {
		return s.fail(err)
	}
	rcfg := runner.Config{
		Root:        s.h.runnerRoot(),
		User:        account,
		BaseEnv:     s.h.environ(),
		Deny:        splitComma(s.h.getenv("RUNNER_ENV_DENY")),
		Allow:       splitComma(s.h.getenv("RUNNER_ENV_ALLOW")),
		IdleTimeout: s.in.IdleTimeout,
		JobTimeout:  s.in.JobTimeout,
		StopGrace:   s.h.stopGrace(),
		Redactor:    s.redactor,
		Log:         s.log,
		OnLine: func(line string) {
			s.log.Info("runner", "line", line)
			u.Stream(line)
		},
	}
	err = s.register(ctx, groupID, &rcfg)
	s.h.registrationOver()
	if err != nil {
		return s.fail(err)
	}
	if ctx.Err() != nil {
		return s.fail(fmt.Errorf("cancelled (%v) while the runner was being registered", context.Cause(ctx)))
	}
	res := s.res
	s.log.Info("runner registered", "runner", res.RunnerName, "runner_id", res.RunnerID, "scope", res.Scope, "labels", strings.Join(res.Labels, ","), "mode", s.in.Mode)
	u.Progress(map[string]any{"stage": "registered", "runner_name": res.RunnerName, "runner_id": res.RunnerID, "labels": res.Labels})

	rr, err := runner.Run(ctx, rcfg)
	res.JobRan, res.JobName, res.JobResult, res.Restarts = rr.JobStarted, rr.JobName, rr.JobResult, rr.Restarts
	if rr.JobStarted {
		res.WaitSeconds = rr.JobStartedAt.Sub(rr.Started).Seconds()
		res.JobSeconds = rr.Ended.Sub(rr.JobStartedAt).Seconds()
	} else {
		res.WaitSeconds = rr.Ended.Sub(rr.Started).Seconds()
	}
	res.TotalSeconds = time.Since(s.start).Seconds()
	switch {
	case err != nil:
		return s.fail(err)
	case rr.IdleTimedOut:
		return s.fail(fmt.Errorf("no workflow job was assigned within idle_timeout %v: check that a queued job's runs-on matches these labels: %s", s.in.IdleTimeout, strings.Join(res.Labels, ", ")))
	case rr.JobTimedOut:
		return s.fail(fmt.Errorf("the workflow job %q ran longer than job_timeout %v and was stopped", rr.JobName, s.in.JobTimeout))
	case rr.Cancelled:
		return s.fail(fmt.Errorf("cancelled (%v): the runner was stopped", context.Cause(ctx)))
	case !rr.JobStarted:
		return s.fail(fmt.Errorf("the runner exited (code %d) without running a job", rr.ExitCode))
	}
	return res, nil
}

// runnerRoot is RunnerRoot, else RUNNER_ROOT (the image sets it), else
// /actions-runner.
func (h *Handler) runnerRoot() string {
	if h.RunnerRoot != "" {
		return h.RunnerRoot
	}
	if r := h.getenv("RUNNER_ROOT"); r != "" {
		return r
	}
	return runner.DefaultRoot
}

func (h *Handler) environ() []string {
	if h.Environ != nil {
		return h.Environ()
	}
	return os.Environ()
}
