package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/retry"
)

// hookPoll is how often a session looks for the job-started hook's marker.
const hookPoll = 250 * time.Millisecond

// session is one run of the listener. Its loop (wait) alone reads the
// listener's events and exit, and owns the result and the timers: the
// idle and job timeouts, and the grace between a stop's SIGINT and its
// SIGKILL. None of them outlives the session.
type session struct {
	cfg      *Config
	res      *Result
	hooks    *hooks
	pid      int        // the listener's, and its process group's
	events   chan event // closed when the output ends
	exited   chan error // cmd.Wait's error, once the output is closed
	idle     timer      // no job yet: stop
	job      timer      // the job runs too long: stop
	grace    timer      // stopping: SIGKILL
	stopping bool
}

// start starts the listener and the goroutines that read its output and
// wait for its exit.
func start(cfg *Config, cred *syscall.Credential, home string, h *hooks, res *Result) (*session, error) {
	pr, pw := io.Pipe()
	cmd, err := listenerCommand(cfg, cred, home, h, pw)
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start runner: %w", err)
	}
	cfg.Log.Info("runner started", "pid", cmd.Process.Pid, "user", cfg.User)
	s := &session{cfg: cfg, res: res, hooks: h, pid: cmd.Process.Pid,
		events: make(chan event, 16), exited: make(chan error, 1)}
	go readLines(pr, cfg, s.events)
	go func() {
		err := cmd.Wait()
		pw.Close()
		s.exited <- err
	}()
	if cfg.IdleTimeout > 0 && !res.JobStarted {
		s.idle.set(cfg.IdleTimeout)
	}
	return s, nil
}

// wait runs the session until the listener exits, and returns its exit
// code. A timeout or the end of ctx stops the listener.
func (s *session) wait(ctx context.Context) (int, error) {
	defer s.stopTimers()
	poll := time.NewTicker(hookPoll)
	defer poll.Stop()
	events, ctxDone := s.events, ctx.Done()
	for {
		select {
		case err := <-s.exited:
			return s.finish(err)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			s.handle(ev)
		case <-poll.C:
			s.checkHooks()
		case <-s.idle.fired():
			s.res.IdleTimedOut = true
			s.stop(fmt.Sprintf("no job was assigned within %v", s.cfg.IdleTimeout))
		case <-s.job.fired():
			s.res.JobTimedOut = true
			s.stop(fmt.Sprintf("the job ran longer than %v", s.cfg.JobTimeout))
		case <-s.grace.fired():
			s.cfg.Log.Warn("the runner did not stop within the grace: killing it; GitHub may not hear that its job ended", "grace", s.cfg.StopGrace)
			s.killGroup()
		case <-ctxDone:
			ctxDone = nil
			s.res.Cancelled = true
			s.stop("cancelled: " + context.Cause(ctx).Error())
		}
	}
}

func (s *session) handle(ev event) {
	s.jobStarted(ev.job)
	if ev.kind == jobCompleted {
		s.res.JobCompleted, s.res.JobResult = true, ev.result
		s.cfg.Log.Info("job completed", "job", ev.job, "result", ev.result)
	}
}

// checkHooks reads the job-started hook's marker: a second signal of the
// job's start besides the output. The job's end comes from the output
// alone (see hooks).
func (s *session) checkHooks() {
	if s.hooks.jobStarted() {
		s.jobStarted(s.res.JobName)
	}
}

// jobStarted records the job's start, once: the idle timeout no longer
// applies, and the job timeout starts.
func (s *session) jobStarted(name string) {
	if s.res.JobStarted {
		return
	}
	s.res.JobStarted, s.res.JobStartedAt, s.res.JobName = true, time.Now(), name
	s.idle.stop()
	s.cfg.Log.Info("job started", "job", name)
	if s.cfg.JobTimeout > 0 {
		s.job.set(s.cfg.JobTimeout)
	}
}

// stop asks the listener to stop, once: SIGINT to the listener alone,
// as the runner's service (runsvc.sh, RunnerService.js) stops it. Its
// Ctrl-C handler shuts the runner down gracefully: a running job is
// cancelled, reported to GitHub, then the listener exits
// (src/Runner.Listener/Runner.cs CtrlCHandler, JobDispatcher.cs). Not
// SIGTERM: its handler lets the process exit after 30 s, finished or not
// (Runner_Unloading); nor the group: the job's steps get their signals
// from the runner's worker, on its schedule. SIGKILL to the group follows
// after StopGrace.
func (s *session) stop(why string) {
	if s.stopping {
		return
	}
	s.stopping = true
	s.cfg.Log.Info("stopping the runner", "reason", why, "grace", s.cfg.StopGrace)
	s.cfg.kill(s.pid, syscall.SIGINT)
	s.grace.set(s.cfg.StopGrace)
}

// killGroup SIGKILLs the listener's process group.
func (s *session) killGroup() {
	s.cfg.kill(-s.pid, syscall.SIGKILL)
}

func (s *session) stopTimers() {
	s.idle.stop()
	s.job.stop()
	s.grace.stop()
}

// finish ends the session once the listener exited: it takes the events
// of the output's last lines (the output is closed, so they end), and
// reads the exit. What the listener left is killed after (afterRun): a
// self-update's updater must finish first.
func (s *session) finish(err error) (int, error) {
	for ev := range s.events {
		s.handle(ev)
	}
	s.checkHooks()
	if errors.Is(err, exec.ErrWaitDelay) {
		s.cfg.Log.Warn("a process the job started still holds the runner's output; not waiting for it")
		err = nil
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
		if code < 0 && !s.stopping {
			return code, fmt.Errorf("runner crashed: %v", err)
		}
	} else if err != nil {
		return -1, err
	}
	s.cfg.Log.Info("runner exited", "exit_code", code)
	return code, nil
}

// timer is a timer a session owns (on retry's clock, the module's one
// source of timers): unset, its channel is nil, never ready; set, it
// fires once, unless stopped first.
type timer struct {
	c    <-chan time.Time
	halt func() bool
}

func (t *timer) set(d time.Duration) {
	t.stop()
	t.c, t.halt = retry.Real.Timer(d)
}

func (t *timer) stop() {
	if t.halt != nil {
		t.halt()
		t.c, t.halt = nil, nil
	}
}

// fired is the timer's channel, nil when unset.
func (t *timer) fired() <-chan time.Time { return t.c }
