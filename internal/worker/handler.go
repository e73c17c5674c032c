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
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
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
	// StopGrace is how long the runner gets to stop after SIGTERM.
	StopGrace time.Duration
	// CleanupTimeout bounds removing the runner from GitHub (default 2 min).
	CleanupTimeout time.Duration
	// RunnerAccount is the unprivileged account runner_user "runner" means
	// (default "runner", which the image creates).
	RunnerAccount string
}

// Result is the job's output.
type Result struct {
	RunnerName    string   `json:"runner_name"`
	RunnerID      int64    `json:"runner_id"`
	Scope         string   `json:"scope"`
	Labels        []string `json:"labels"`
	Mode          string   `json:"mode"`
	JobRan        bool     `json:"job_ran"`
	JobName       string   `json:"job_name,omitempty"`
	JobResult     string   `json:"job_result,omitempty"`
	RunnerRemoved string   `json:"runner_removed"` // "by GitHub", "by the worker", or "no" (with an error)
	Restarts      int      `json:"runner_restarts,omitempty"`
	WaitSeconds   float64  `json:"wait_seconds"`
	JobSeconds    float64  `json:"job_seconds"`
	TotalSeconds  float64  `json:"total_seconds"`
}

// JobError is a failed job with the result so far (runner, cleanup).
type JobError struct {
	Err    error
	Result *Result
}

// Error says what failed and what became of the runner; cleanup runs after
// the error is made, so this reads the result when the error is printed.
func (e *JobError) Error() string {
	if e.Result == nil || e.Result.RunnerID == 0 {
		return e.Err.Error()
	}
	removed := e.Result.RunnerRemoved
	if removed == "" {
		removed = "pending"
	}
	return fmt.Sprintf("%v [runner %s, id %d, removed: %s]", e.Err, e.Result.RunnerName, e.Result.RunnerID, removed)
}
func (e *JobError) Unwrap() error { return e.Err }

func (h *Handler) getenv(k string) string {
	if h.Getenv != nil {
		return h.Getenv(k)
	}
	return os.Getenv(k)
}

var nameSafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// RunnerName is unique per pod and job, within GitHub's 64 characters.
func RunnerName(podID, jobID string) string {
	name := "runpod-" + nameSafe.ReplaceAllString(podID, "-") + "-" + nameSafe.ReplaceAllString(jobID, "-")
	if len(name) > 64 {
		sum := sha256.Sum256([]byte(podID + "/" + jobID))
		name = name[:51] + "-" + hex.EncodeToString(sum[:])[:12]
	}
	return name
}

// Labels are what the runner advertises: JIT adds no defaults, so
// self-hosted, linux and the architecture come first.
func (h *Handler) Labels(extra []string) []string {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	flavour := h.Flavour
	if flavour == "" {
		flavour = h.getenv("WORKER_FLAVOUR")
	}
	cuda := h.CUDA
	if cuda == "" {
		cuda = h.getenv("WORKER_CUDA_VERSION")
	}
	ls := []string{"self-hosted", "linux", arch, "runpod"}
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
	in, err := ParseInput(job.Input, h.getenv)
	if err != nil {
		return nil, err
	}
	if in.SelfTest {
		return h.selfTest()
	}
	redactor := &secret.Redactor{}
	redactor.Add(in.PAT)
	token := in.PAT
	if token.Empty() && in.App != nil {
		// A short-lived installation token instead of a personal PAT.
		if token, err = github.InstallationToken(ctx, in.APIURL, *in.App, h.HTTP); err != nil {
			return nil, err
		}
		redactor.Add(token)
	}

	gh, err := github.NewClient(in.Scope, github.Options{APIURL: in.APIURL, Token: token, HTTP: h.HTTP})
	if err != nil {
		return nil, err
	}
	if h.GitHubBackoff > 0 {
		gh.Backoff = h.GitHubBackoff
		gh.MaxWait = 20 * h.GitHubBackoff
	}
	res := &Result{
		RunnerName: RunnerName(h.PodID, job.ID),
		Scope:      in.Scope.String(),
		Labels:     h.Labels(in.Labels),
		Mode:       in.Mode,
	}
	root := h.runnerRoot()
	fail := func(err error) (any, error) {
		res.TotalSeconds = time.Since(start).Seconds()
		return nil, &JobError{Err: errors.New(redactor.Redact(err.Error())), Result: res}
	}

	groupID, err := gh.RunnerGroupID(ctx, in.RunnerGroup)
	if err != nil {
		return fail(err)
	}
	account := in.RunnerUser
	if account == "runner" && h.RunnerAccount != "" {
		account = h.RunnerAccount
	}
	rcfg := runner.Config{
		Root:        root,
		User:        account,
		BaseEnv:     h.environ(),
		Deny:        splitComma(h.getenv("RUNNER_ENV_DENY")),
		Allow:       splitComma(h.getenv("RUNNER_ENV_ALLOW")),
		IdleTimeout: in.IdleTimeout,
		JobTimeout:  in.JobTimeout,
		StopGrace:   h.StopGrace,
		Redactor:    redactor,
		Log:         log,
		OnLine: func(line string) {
			log.Info("runner", "line", line)
			u.Stream(line)
		},
	}

	// Register. From the moment GitHub returns an id, every path below
	// removes the runner again.
	switch in.Mode {
	case "token":
		tok, err := gh.RegistrationToken(ctx)
		if err != nil {
			return fail(err)
		}
		cerr := runner.Configure(ctx, rcfg, runner.ConfigureOptions{URL: gh.RunnerURL(), Token: tok, Name: res.RunnerName, Labels: res.Labels, RunnerGroup: in.RunnerGroup, WorkFolder: "_work"})
		id, rerr := runner.ReadRunnerID(root)
		if rerr != nil || id == 0 {
			if r, found, ferr := gh.FindRunner(context.WithoutCancel(ctx), res.RunnerName); ferr == nil && found {
				id = r.ID
			}
		}
		res.RunnerID = id
		defer h.cleanup(ctx, gh, res, log)
		if cerr != nil {
			return fail(cerr)
		}
		if id == 0 {
			return fail(errors.New("configure runner: registered, but its id is unknown"))
		}
	default:
		id, jit, err := gh.JITConfig(ctx, res.RunnerName, groupID, res.Labels, "_work")
		if err != nil {
			return fail(err)
		}
		res.RunnerID = id
		defer h.cleanup(ctx, gh, res, log)
		redactor.Add(jit)
		rcfg.JIT = jit
	}
	log.Info("runner registered", "runner", res.RunnerName, "runner_id", res.RunnerID, "scope", res.Scope, "labels", strings.Join(res.Labels, ","), "mode", in.Mode)
	u.Progress(map[string]any{"stage": "registered", "runner_name": res.RunnerName, "runner_id": res.RunnerID, "labels": res.Labels})

	rr, err := runner.Run(ctx, rcfg)
	res.JobRan, res.JobName, res.JobResult, res.Restarts = rr.JobStarted, rr.JobName, rr.JobResult, rr.Restarts
	if rr.JobStarted {
		res.WaitSeconds = rr.JobStartedAt.Sub(rr.Started).Seconds()
		res.JobSeconds = rr.Ended.Sub(rr.JobStartedAt).Seconds()
	} else {
		res.WaitSeconds = rr.Ended.Sub(rr.Started).Seconds()
	}
	res.TotalSeconds = time.Since(start).Seconds()
	switch {
	case err != nil:
		return fail(err)
	case rr.IdleTimedOut:
		return fail(fmt.Errorf("no workflow job was assigned within idle_timeout %v: check that a queued job's runs-on matches these labels: %s", in.IdleTimeout, strings.Join(res.Labels, ", ")))
	case rr.JobTimedOut:
		return fail(fmt.Errorf("the workflow job %q ran longer than job_timeout %v and was stopped", rr.JobName, in.JobTimeout))
	case rr.Cancelled:
		return fail(fmt.Errorf("cancelled (%v): the runner was stopped", context.Cause(ctx)))
	case !rr.JobStarted:
		return fail(fmt.Errorf("the runner exited (code %d) without running a job", rr.ExitCode))
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

// cleanup removes the runner unless GitHub already did (it removes an
// ephemeral runner after its job). It runs on every path, with a context of
// its own, so a cancelled job still cleans up.
func (h *Handler) cleanup(ctx context.Context, gh *github.Client, res *Result, log *slog.Logger) {
	if res.RunnerID == 0 {
		return
	}
	timeout := h.CleanupTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	_, found, err := gh.GetRunner(cctx, res.RunnerID)
	if err == nil && !found {
		res.RunnerRemoved = "by GitHub"
		log.Info("runner already removed by GitHub", "runner_id", res.RunnerID)
		return
	}
	if err := gh.DeleteRunner(cctx, res.RunnerID); err != nil {
		res.RunnerRemoved = "no"
		log.Error("could not remove the runner from GitHub: it stays listed until GitHub reaps it", "runner_id", res.RunnerID, "error", err)
		return
	}
	res.RunnerRemoved = "by the worker"
	log.Info("runner removed", "runner_id", res.RunnerID)
}
