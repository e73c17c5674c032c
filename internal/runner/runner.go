// Package runner supervises the GitHub Actions runner (actions/runner) for
// one job: it starts bin/Runner.Listener directly (no shell, and not run.sh,
// which hides the listener's exit code), as an unprivileged user with an
// environment stripped of the worker's secrets, streams its output with
// secrets redacted, detects job start and end, enforces the idle and job
// timeouts, and interprets the listener's exit codes.
package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// DefaultRoot is where the image installs the runner.
const DefaultRoot = "/actions-runner"

// DefaultUser is the unprivileged user the image creates for jobs.
const DefaultUser = "runner"

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
	StopGrace   time.Duration // SIGTERM to SIGKILL (default 10 s)
	MaxRestarts int           // self-update (3/4) and retryable (2) restarts (default 3)

	Redactor *secret.Redactor
	// OnLine receives every output line, redacted.
	OnLine func(line string)
	Log    *slog.Logger
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

// exitMeaning explains the listener's exit codes (actions/runner
// src/Runner.Common/Constants.cs ReturnCode).
func exitMeaning(code int) string {
	switch code {
	case 1:
		return "terminated: the runner's registration was deleted, access was denied, the JIT config is invalid, or the runner version is deprecated"
	case 2:
		return "retryable failure"
	case 3, 4:
		return "the runner updated itself"
	case 5:
		return "session conflict: another listener is connected with this runner's configuration"
	case 7:
		return "runner version deprecated: GitHub no longer accepts this runner; update the image"
	}
	return "unexpected exit"
}

var (
	runningJobRE = regexp.MustCompile(`Running job: (.+?)\s*$`)
	jobDoneRE    = regexp.MustCompile(`Job (.+?) completed with result: (\w+)`)
)

func (c *Config) defaults() {
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.User == "" {
		c.User = DefaultUser
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.MaxRestarts <= 0 {
		c.MaxRestarts = 3
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Redactor == nil {
		c.Redactor = &secret.Redactor{}
	}
}

// Run runs the listener until the job ends, a timeout fires, ctx ends
// (SIGTERM or a RunPod cancel: the listener is told to stop, which cancels
// a running job) or the listener fails.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	cfg.Redactor.Add(cfg.JIT)
	res := &Result{Started: time.Now()}
	defer func() { res.Ended = time.Now() }()
	cred, home, err := credential(cfg.User)
	if err != nil {
		return res, err
	}
	hooks, err := newHooks(cred)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(hooks.dir)

	for {
		code, err := runOnce(ctx, &cfg, cred, home, hooks, res)
		res.ExitCode = code
		if err != nil {
			return res, err
		}
		if res.IdleTimedOut || res.JobTimedOut || res.Cancelled {
			return res, nil
		}
		switch code {
		case 0:
			return res, nil
		case 2, 3, 4:
			if res.Restarts >= cfg.MaxRestarts {
				return res, &ExitError{code, exitMeaning(code) + fmt.Sprintf(", and %d restarts did not help", res.Restarts)}
			}
			res.Restarts++
			if code == 2 {
				cfg.Log.Warn("runner failed with a retryable error: restarting", "exit_code", code, "restart", res.Restarts)
			} else {
				cfg.Log.Warn("the runner updated itself: this image's runner is out of date, rebuild it with a newer RUNNER_VERSION; restarting the updated runner", "exit_code", code, "restart", res.Restarts)
			}
		default:
			return res, &ExitError{code, exitMeaning(code)}
		}
	}
}

func runOnce(ctx context.Context, cfg *Config, cred *syscall.Credential, home string, hooks *hooks, res *Result) (int, error) {
	bin := filepath.Join(cfg.Root, "bin", "Runner.Listener")
	if _, err := os.Stat(bin); err != nil {
		return -1, fmt.Errorf("runner not installed: %w", err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Dir = cfg.Root
	cmd.Env = runnerEnv(cfg, home, hooks)
	if !cfg.JIT.Empty() {
		cmd.Env = append(cmd.Env, "ACTIONS_RUNNER_INPUT_JITCONFIG="+cfg.JIT.Reveal())
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	// Output goes through a pipe of ours, and Wait gives up on it 5 s after
	// the listener exits: a daemon a workflow step left behind (setsid, so
	// out of the listener's process group) may hold the output open forever.
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start runner: %w", err)
	}
	cfg.Log.Info("runner started", "pid", cmd.Process.Pid, "user", cfg.User)

	events := make(chan string, 16)
	linesDone := make(chan struct{})
	go func() {
		defer close(linesDone)
		readLines(pr, cfg, events)
	}()
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		exited <- err
	}()

	var idle, jobT <-chan time.Time
	if cfg.IdleTimeout > 0 && !res.JobStarted {
		t := time.NewTimer(cfg.IdleTimeout)
		defer t.Stop()
		idle = t.C
	}
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	var jobTimer *time.Timer
	defer func() {
		if jobTimer != nil {
			jobTimer.Stop()
		}
	}()
	jobStarted := func(name string) {
		if res.JobStarted {
			return
		}
		res.JobStarted, res.JobStartedAt, res.JobName = true, time.Now(), name
		idle = nil
		cfg.Log.Info("job started", "job", name)
		if cfg.JobTimeout > 0 {
			jobTimer = time.NewTimer(cfg.JobTimeout)
			jobT = jobTimer.C
		}
	}
	stopping := false
	stop := func(why string) {
		if stopping {
			return
		}
		stopping = true
		cfg.Log.Info("stopping the runner", "reason", why)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		time.AfterFunc(cfg.StopGrace, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	}
	handle := func(ev string) {
		if name, ok := strings.CutPrefix(ev, "start:"); ok {
			jobStarted(name)
		} else if rest, ok := strings.CutPrefix(ev, "done:"); ok {
			name, result, _ := strings.Cut(rest, "\x00")
			jobStarted(name)
			res.JobCompleted, res.JobResult = true, result
			cfg.Log.Info("job completed", "job", name, "result", result)
		}
	}
	ctxDone := ctx.Done()
	for {
		select {
		case err := <-exited:
			// Reap anything the listener left in its group, then take the
			// output's last lines (the pipe is closed, so this ends).
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			for drained := false; !drained; {
				select {
				case ev := <-events:
					handle(ev)
				case <-linesDone:
					for len(events) > 0 {
						handle(<-events)
					}
					drained = true
				}
			}
			hooks.check(jobStarted, res)
			if errors.Is(err, exec.ErrWaitDelay) {
				cfg.Log.Warn("a process the job started still holds the runner's output; not waiting for it")
				err = nil
			}
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
				if code < 0 && !stopping {
					return code, fmt.Errorf("runner crashed: %v", err)
				}
			} else if err != nil {
				return -1, err
			}
			cfg.Log.Info("runner exited", "exit_code", code)
			return code, nil
		case ev := <-events:
			handle(ev)
		case <-poll.C:
			hooks.check(jobStarted, res)
		case <-idle:
			res.IdleTimedOut = true
			stop(fmt.Sprintf("no job was assigned within %v", cfg.IdleTimeout))
			idle = nil
		case <-jobT:
			res.JobTimedOut = true
			stop(fmt.Sprintf("the job ran longer than %v", cfg.JobTimeout))
			jobT = nil
		case <-ctxDone:
			res.Cancelled = true
			stop("cancelled: " + context.Cause(ctx).Error())
			ctxDone = nil
		}
	}
}

func readLines(r io.Reader, cfg *Config, events chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := cfg.Redactor.Redact(sc.Text())
		if cfg.OnLine != nil {
			cfg.OnLine(line)
		}
		if m := jobDoneRE.FindStringSubmatch(line); m != nil {
			events <- "done:" + m[1] + "\x00" + m[2]
		} else if m := runningJobRE.FindStringSubmatch(line); m != nil {
			events <- "start:" + m[1]
		}
	}
	io.Copy(io.Discard, r)
}

// credential resolves the user the listener runs as. Root needs nothing.
func credential(name string) (*syscall.Credential, string, error) {
	if name == "root" {
		return nil, "/root", nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, "", fmt.Errorf("runner user %q does not exist (the image creates %q; runner_user: root is the explicit opt-out): %w", name, DefaultUser, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if uid == 0 {
		return nil, u.HomeDir, nil
	}
	if os.Getuid() != 0 {
		if uint64(os.Getuid()) == uid {
			return nil, u.HomeDir, nil
		}
		return nil, "", fmt.Errorf("cannot run the runner as %q: the worker is not root", name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, u.HomeDir, nil
}

// basics are kept even in allow-list mode.
var basics = []string{"PATH", "LANG", "LC_ALL", "TZ", "TERM", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "CUDA_VERSION", "LD_LIBRARY_PATH"}

// DefaultDeny are removed from the runner's environment whatever is
// configured: credentials and the RunPod platform's variables.
var DefaultDeny = []string{"GITHUB_PAT", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_APP_*", "RUNPOD_*", "ACTIONS_RUNNER_INPUT_*", "RUNNER_ENV_*", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}

func match(name string, pats []string) bool {
	for _, p := range pats {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// ScrubEnv returns env without DefaultDeny and deny, and, when allow is
// not empty, with only the allowed variables and the basics.
func ScrubEnv(env, deny, allow []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if match(k, DefaultDeny) || match(k, deny) {
			continue
		}
		if len(allow) > 0 && !match(k, allow) && !match(k, basics) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func runnerEnv(cfg *Config, home string, h *hooks) []string {
	env := ScrubEnv(cfg.BaseEnv, cfg.Deny, cfg.Allow)
	drop := map[string]bool{"HOME": true, "USER": true, "LOGNAME": true, "RUNNER_ALLOW_RUNASROOT": true,
		"ACTIONS_RUNNER_HOOK_JOB_STARTED": true, "ACTIONS_RUNNER_HOOK_JOB_COMPLETED": true}
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	out = append(out, "HOME="+home, "USER="+cfg.User, "LOGNAME="+cfg.User,
		"ACTIONS_RUNNER_HOOK_JOB_STARTED="+h.started, "ACTIONS_RUNNER_HOOK_JOB_COMPLETED="+h.completed)
	if cfg.User == "root" {
		out = append(out, "RUNNER_ALLOW_RUNASROOT=1")
	}
	return out
}

// hooks are the runner's job-started and job-completed hook scripts: they
// leave marker files the supervisor watches, a second signal besides the
// listener's output.
type hooks struct {
	dir, started, completed string
}

func newHooks(cred *syscall.Credential) (*hooks, error) {
	dir, err := os.MkdirTemp("", "wgr-hooks-")
	if err != nil {
		return nil, err
	}
	h := &hooks{dir: dir, started: filepath.Join(dir, "job-started.sh"), completed: filepath.Join(dir, "job-completed.sh")}
	for script, marker := range map[string]string{h.started: "started", h.completed: "completed"} {
		body := fmt.Sprintf("#!/bin/sh\n# worker-github_runner: tells the worker the job %s\n: > '%s'\n", marker, filepath.Join(dir, marker))
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *hooks) check(started func(string), res *Result) {
	if _, err := os.Stat(filepath.Join(h.dir, "started")); err == nil {
		started(res.JobName)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "completed")); err == nil && !res.JobCompleted {
		started(res.JobName)
		res.JobCompleted = true
	}
}

// ReadRunnerID reads the runner's id from the .runner file config.sh
// writes (token mode). The file may start with a UTF-8 BOM.
func ReadRunnerID(root string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(root, ".runner"))
	if err != nil {
		return 0, err
	}
	b = []byte(strings.TrimPrefix(string(b), "\ufeff"))
	var f struct {
		AgentID json.Number `json:"agentId"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, fmt.Errorf(".runner: %w", err)
	}
	return f.AgentID.Int64()
}

// ConfigureOptions are config.sh's arguments in token mode.
type ConfigureOptions struct {
	URL         string
	Token       secret.Value
	Name        string
	Labels      []string
	RunnerGroup string
	WorkFolder  string
}

// Configure registers the runner with a registration token, as config.sh
// does (bin/Runner.Listener configure), without a shell. The token goes
// through the environment, not argv.
func Configure(ctx context.Context, cfg Config, o ConfigureOptions) error {
	cfg.defaults()
	cfg.Redactor.Add(o.Token)
	cred, home, err := credential(cfg.User)
	if err != nil {
		return err
	}
	args := []string{"configure", "--unattended", "--ephemeral", "--disableupdate", "--no-default-labels",
		"--url", o.URL, "--name", o.Name, "--labels", strings.Join(o.Labels, ","), "--work", o.WorkFolder, "--replace"}
	if o.RunnerGroup != "" {
		args = append(args, "--runnergroup", o.RunnerGroup)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.Root, "bin", "Runner.Listener"), args...)
	cmd.Dir = cfg.Root
	cmd.Env = append(ScrubEnv(cfg.BaseEnv, cfg.Deny, cfg.Allow), "HOME="+home, "ACTIONS_RUNNER_INPUT_TOKEN="+o.Token.Reveal())
	if cfg.User == "root" {
		cmd.Env = append(cmd.Env, "RUNNER_ALLOW_RUNASROOT=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			l = cfg.Redactor.Redact(l)
			if cfg.OnLine != nil {
				cfg.OnLine(l)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("configure runner: %v: %s", err, cfg.Redactor.Redact(lastLine(string(out))))
	}
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
