// Package listener supervises the GitHub Actions runner (actions/runner) for
// one job: it starts bin/Runner.Listener directly (no shell, and not run.sh,
// which hides the listener's exit code), as an unprivileged user with an
// environment stripped of the worker's secrets, streams its output with
// secrets redacted, detects job start and end, enforces the idle and job
// timeouts, and interprets the listener's exit codes.
package listener

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// DefaultRoot is where the image installs the runner.
const DefaultRoot = "/actions-runner"

// DefaultUser is the unprivileged user the image creates for jobs.
const DefaultUser = "runner"

// DefaultStopGrace is StopGrace's default: what the real runner needs to
// cancel a job after SIGINT. Its worker gives the running step SIGINT,
// SIGTERM 7.5 s later and kills it 2.5 s after that
// (src/Runner.Sdk/ProcessInvoker.cs), skips the remaining steps, uploads
// the job's logs and reports the job's end to GitHub; only then does the
// listener print "completed with result" and exit
// (src/Runner.Listener/JobDispatcher.cs). That is 10 s for the step and
// 35 s for the upload and the report; killed sooner, the runner may never
// tell GitHub that the job ended, and it stays busy.
const DefaultStopGrace = 45 * time.Second

// Config describes one runner session.
type Config struct {
	Root string // the runner's folder (DefaultRoot)
	// User runs the listener: DefaultUser, or "root" (an explicit opt-in
	// that lets jobs read the worker's secrets).
	User string
	// JIT is the encoded just-in-time config (JIT mode). It reaches the
	// listener through ACTIONS_RUNNER_INPUT_JITCONFIG, never argv.
	JIT secret.Value
	// BaseEnv is the environment to start from (the worker's); secrets are
	// removed from it (see ScrubEnv).
	BaseEnv []string
	// Deny lists further variable names to remove; "NAME_*" removes a prefix.
	Deny []string
	// Allow, when not empty, keeps only these variables (plus the basics
	// a runner needs: PATH, LANG, TZ, ...).
	Allow []string

	IdleTimeout time.Duration // no job within this: stop (0: none)
	JobTimeout  time.Duration // a job running longer: stop (0: none)
	// StopGrace is how long a stopped listener gets, from its SIGINT,
	// to cancel its job and exit before its process group is SIGKILLed
	// (default DefaultStopGrace).
	StopGrace   time.Duration
	MaxRestarts int // self-update (3/4) and retryable (2) restarts (default 3)
	// RetryBackoff is the wait before restarting after a retryable
	// failure (exit 2), as run.sh waits (default 5 s).
	RetryBackoff time.Duration
	// UpdateWait bounds the wait, after a self-update exit (3/4), for the
	// detached updater to swap bin/ and externals/ and write
	// update.finished (default 30 s, as run.sh).
	UpdateWait time.Duration

	Redactor *secret.Redactor
	// MaxLine is the longest output line passed on (default 16 KiB);
	// longer lines are cut, with a marker saying how many bytes were cut.
	MaxLine int
	// OnLine receives every output line, redacted and cut to MaxLine.
	OnLine func(line string)
	Log    *slog.Logger

	// kill is syscall.Kill (a negative pid signals a process group);
	// tests watch it.
	kill func(pid int, sig syscall.Signal) error
}

// Result is what happened.
type Result struct {
	JobStarted   bool      `json:"job_started"`
	JobCompleted bool      `json:"job_completed"`
	JobName      string    `json:"job_name,omitempty"`
	JobResult    string    `json:"job_result,omitempty"` // Succeeded, Failed, Canceled, ... as the runner says
	ExitCode     int       `json:"exit_code"`
	Restarts     int       `json:"restarts,omitempty"`
	IdleTimedOut bool      `json:"idle_timed_out,omitempty"`
	JobTimedOut  bool      `json:"job_timed_out,omitempty"`
	Cancelled    bool      `json:"cancelled,omitempty"`
	Started      time.Time `json:"started"`
	JobStartedAt time.Time `json:"job_started_at,omitzero"`
	Ended        time.Time `json:"ended"`
}

// ExitError is a listener exit that ends the session with an error.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("runner exited with code %d: %s", e.Code, e.Msg)
}

// The listener's exit codes (actions/runner src/Runner.Common/Constants.cs
// ReturnCode).
const (
	exitTerminated      = 1
	exitRetryable       = 2
	exitUpdated         = 3
	exitUpdatedRunOnce  = 4
	exitSessionConflict = 5
	exitDeprecated      = 7
)

// exitMeaning explains a listener's exit code.
func exitMeaning(code int) string {
	switch code {
	case exitTerminated:
		return "terminated: the runner's registration was deleted, access was denied, or the JIT config is invalid"
	case exitRetryable:
		return "retryable failure"
	case exitUpdated, exitUpdatedRunOnce:
		return "the runner updated itself"
	case exitSessionConflict:
		return "session conflict: another listener is connected with this runner's configuration"
	case exitDeprecated:
		return "runner version deprecated: GitHub no longer accepts this runner; update the image"
	}
	return "unexpected exit"
}

func (c *Config) defaults() {
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.User == "" {
		c.User = DefaultUser
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.MaxRestarts <= 0 {
		c.MaxRestarts = 3
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 5 * time.Second
	}
	if c.UpdateWait <= 0 {
		c.UpdateWait = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Redactor == nil {
		c.Redactor = &secret.Redactor{}
	}
	if c.MaxLine <= 0 {
		c.MaxLine = 16 << 10
	}
	if c.kill == nil {
		c.kill = syscall.Kill
	}
}

// Run runs the listener until the job ends, a timeout fires, ctx ends
// (SIGTERM or a RunPod cancel: the listener is told to stop, which cancels
// a running job; see session.stop) or the listener fails. With a JIT
// config, the previous runner's configuration is removed first (see
// resetRoot; Configure does it in token mode). After each run of the listener, what it left is
// killed (see afterRun).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	cfg.Redactor.Add(cfg.JIT)
	res := &Result{Started: time.Now()}
	defer func() { res.Ended = time.Now() }()
	cred, home, err := credential(cfg.User)
	if err != nil {
		return res, err
	}
	if cred != nil {
		defer enterAccount(cred.Uid)()
	}
	if !cfg.JIT.Empty() {
		if err := resetRoot(&cfg, cred); err != nil {
			return res, err
		}
	}
	hooks, err := newHooks(cred)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(hooks.dir)
	for {
		s, err := start(&cfg, cred, home, hooks, res)
		if err != nil {
			res.ExitCode = -1
			return res, err
		}
		code, err := s.wait(ctx)
		res.ExitCode = code
		afterRun(ctx, s, code, cred)
		if err != nil {
			return res, err
		}
		if again, err := restart(&cfg, res, code); !again {
			return res, err
		}
		if !backoff(ctx, &cfg, code) {
			res.Cancelled = true
			return res, nil
		}
	}
}

// backoff waits RetryBackoff after a retryable failure, as run.sh waits
// 5 s. It says whether to restart: not once ctx ended.
func backoff(ctx context.Context, cfg *Config, code int) bool {
	if code == exitRetryable {
		sleep(ctx, cfg.RetryBackoff)
	}
	return ctx.Err() == nil
}

// restart says whether the listener is to run again after exiting with
// code: after a retryable failure (2) or a self-update (3, 4), up to
// MaxRestarts times; not after a stop. The error says why not, if the
// exit was a failure.
func restart(cfg *Config, res *Result, code int) (bool, error) {
	if res.IdleTimedOut || res.JobTimedOut || res.Cancelled || code == 0 {
		return false, nil
	}
	if code != exitRetryable && code != exitUpdated && code != exitUpdatedRunOnce {
		return false, &ExitError{code, exitMeaning(code)}
	}
	if res.Restarts >= cfg.MaxRestarts {
		return false, &ExitError{code, exitMeaning(code) + fmt.Sprintf(", and %d restarts did not help", res.Restarts)}
	}
	res.Restarts++
	if code == exitRetryable {
		cfg.Log.Warn("runner failed with a retryable error: restarting", "exit_code", code, "restart", res.Restarts, "after", cfg.RetryBackoff)
	} else {
		cfg.Log.Warn("the runner updated itself: this image's runner is out of date, rebuild it with a newer RUNNER_VERSION; restarting the updated runner", "exit_code", code, "restart", res.Restarts)
	}
	return true, nil
}
