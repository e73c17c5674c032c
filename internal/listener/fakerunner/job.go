package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// The real runner's cancellation timings: a cancelled step gets SIGINT,
// then SIGTERM 7.5 s later, then its process tree is killed 2.5 s later
// (src/Runner.Sdk/ProcessInvoker.cs _sigintTimeout, _sigtermTimeout); on
// SIGTERM the listener's unload handler waits at most 30 s for the
// shutdown before the process exits (src/Runner.Listener/Runner.cs
// Runner_Unloading, src/Runner.Common/Constants.cs ExitOnUnloadTimeout).
const (
	sigintTimeout  = 7500 * time.Millisecond
	sigtermTimeout = 2500 * time.Millisecond
	unloadTimeout  = 30 * time.Second
	jobPoll        = 100 * time.Millisecond
)

// job is the job the fake runs, as Runner.Worker runs it: the started
// hook ("Set up runner"), the main step (a child process), post steps,
// the completed hook ("Complete runner"), then the finalization (log
// upload, the job-completed event).
type job struct {
	b      behaviour
	term   <-chan os.Signal
	result string
	// shutdown: a signal arrived, the runner shuts down. The running
	// step is cancelled; the steps after it, post steps and the
	// completed hook included, are skipped (src/Runner.Worker/StepsRunner.cs:
	// "Skip evaluate condition on runner shutdown"); the listener reports
	// Canceled (src/Runner.Listener/JobDispatcher.cs).
	shutdown bool
}

// scaled is d on the behaviour's time scale.
func (b behaviour) scaled(d time.Duration) time.Duration {
	if b.TimeScale <= 0 {
		return d
	}
	return time.Duration(float64(d) / b.TimeScale)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// runJob runs the job and returns the result the listener prints.
func runJob(b behaviour, term <-chan os.Signal) string {
	j := &job{b: b, term: term, result: b.Result}
	if j.hook("ACTIONS_RUNNER_HOOK_JOB_STARTED", "started") {
		j.mainStep()
		j.postSteps()
	} else {
		j.result = "Failed" // the job's steps are skipped; the completed hook (always()) runs
	}
	if !j.shutdown && !j.hook("ACTIONS_RUNNER_HOOK_JOB_COMPLETED", "completed") {
		j.result = "Failed" // a failing post-job step fails the job
	}
	time.Sleep(b.scaled(seconds(b.UploadSeconds)))
	if j.shutdown {
		return "Canceled"
	}
	return j.result
}

// hook runs a job hook as the real runner does, as a step
// (src/Runner.Worker/JobHookProvider.cs): a .sh script run by
// `bash --noprofile --norc -e -o pipefail` (sh -e without bash). It says
// whether the step succeeded; FailHook names a hook that fails (exit 1).
func (j *job) hook(env, name string) bool {
	p := os.Getenv(env)
	if p == "" {
		return true
	}
	if j.b.FailHook == name || filepath.Ext(p) != ".sh" {
		return false
	}
	if _, err := os.Stat(p); err != nil {
		return false // "File doesn't exist"
	}
	cmd := exec.Command("sh", "-e", p)
	if bash, err := exec.LookPath("bash"); err == nil {
		cmd = exec.Command(bash, "--noprofile", "--norc", "-e", "-o", "pipefail", p)
	}
	return cmd.Run() == nil
}

// mainStep is the workflow's step: the scripted output, then a child
// process that runs JobSeconds (ignoring the signals StepIgnores names);
// a signal to the listener cancels it.
func (j *job) mainStep() {
	if j.b.Dump != "" {
		dump(j.b.Dump)
	}
	printLong(j.b)
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	for i := range j.b.Flood {
		fmt.Fprintf(out, "flood line %06d\n", i)
	}
	out.Flush()
	exe, _ := os.Executable()
	step := exec.Command(exe, "_step", fmt.Sprint(j.b.JobSeconds), fmt.Sprint(slices.Contains(j.b.StepIgnores, "INT")),
		fmt.Sprint(slices.Contains(j.b.StepIgnores, "TERM")), j.b.PidFile, j.b.StepScript)
	if err := step.Start(); err != nil {
		fail(err.Error())
	}
	exited := make(chan error, 1)
	go func() { exited <- step.Wait() }()
	select {
	case <-exited:
	case sig := <-j.term:
		j.cancel(sig, step, exited)
	}
	j.leaveProcesses()
}

// cancel shuts the runner down on sig: the step gets SIGINT, SIGTERM
// 7.5 s later, SIGKILL 2.5 s after that.
func (j *job) cancel(sig os.Signal, step *exec.Cmd, exited <-chan error) {
	j.shutdown = true
	announce(sig, j.b)
	for _, s := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, sigintTimeout}, {syscall.SIGTERM, sigtermTimeout}} {
		step.Process.Signal(s.sig)
		select {
		case <-exited:
			return
		case <-time.After(j.b.scaled(s.wait)):
		}
	}
	step.Process.Kill()
	<-exited
}

// announce is what the listener does on a signal: "Exiting..." on SIGINT
// (its Ctrl-C handler); on SIGTERM its unload handler lets the process
// exit 30 s later, finished or not.
func announce(sig os.Signal, b behaviour) {
	if sig == syscall.SIGINT {
		fmt.Println("Exiting...")
		return
	}
	time.AfterFunc(b.scaled(unloadTimeout), func() { os.Exit(0) })
}

// postSteps run for PostSeconds, unless the runner shuts down (then they
// are skipped, or the running one is cancelled).
func (j *job) postSteps() {
	if j.shutdown || j.b.PostSeconds <= 0 {
		return
	}
	select {
	case <-time.After(j.b.scaled(seconds(j.b.PostSeconds))):
	case sig := <-j.term:
		j.shutdown = true
		announce(sig, j.b)
	}
}

// leaveProcesses starts what Daemon and Escape ask for.
func (j *job) leaveProcesses() {
	if j.b.Daemon {
		d := exec.Command("sleep", "137")
		d.Stdout, d.Stderr = os.Stdout, os.Stderr
		d.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		d.Start()
		notePid(j.b, d)
	}
	if j.b.Escape {
		d := exec.Command("sleep", "300")
		d.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		d.Start()
		notePid(j.b, d)
	}
}

// step is the fake workflow step (`Runner.Listener _step SECONDS
// IGNORE_INT IGNORE_TERM PID_FILE SCRIPT`): it runs SCRIPT (sh -c), if
// any, then SECONDS, ignoring SIGINT and SIGTERM as told; once it does,
// it adds its pid to PID_FILE, if any.
func step() {
	var secs float64
	var ignoreInt, ignoreTerm bool
	fmt.Sscan(os.Args[2], &secs)
	fmt.Sscan(os.Args[3], &ignoreInt)
	fmt.Sscan(os.Args[4], &ignoreTerm)
	if ignoreInt {
		signal.Ignore(syscall.SIGINT)
	}
	if ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	if f, err := os.OpenFile(os.Args[5], os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o666); err == nil {
		fmt.Fprintln(f, os.Getpid())
		f.Close()
	}
	if os.Args[6] != "" {
		sh := exec.Command("sh", "-c", os.Args[6])
		sh.Stdout, sh.Stderr = os.Stderr, os.Stderr
		sh.Run()
	}
	time.Sleep(seconds(secs))
}

// waitJob asks the fake GitHub for a job until it assigns one: 202 means
// none yet (asked again every 100 ms), 404 that the runner was removed
// (the real listener then cannot renew its session, says so and exits 1),
// anything else (204) starts it. A signal ends the wait as it ends an idle
// listener.
func waitJob(rf runnerFile, term <-chan os.Signal) {
	for {
		select {
		case <-time.After(jobPoll):
		case sig := <-term:
			idleExit(sig)
		}
		switch post(rf, "job", nil) {
		case http.StatusAccepted:
		case http.StatusNotFound:
			fmt.Fprintln(os.Stderr, ts()+": Failed to create session. Runner registration has been deleted from the server, please re-configure. Runner registrations are automatically deleted for runners that have not connected to the service recently.")
			os.Exit(1)
		default:
			return
		}
	}
}

// idleExit is how a listener without a job exits on a signal.
func idleExit(sig os.Signal) {
	if sig == syscall.SIGINT {
		fmt.Println("Exiting...")
	}
	fmt.Println(ts() + ": Runner listener exit because of cancellation.")
	os.Exit(0)
}

// done tells the fake GitHub the job ended, with its result.
func done(rf runnerFile, result string) {
	body, _ := json.Marshal(map[string]string{"result": result})
	post(rf, "done", body)
}

// post posts to the fake GitHub's /_fake/runners/{id}/{what} and returns
// the status (0 when it did not answer).
func post(rf runnerFile, what string, body []byte) int {
	resp, err := http.Post(fmt.Sprintf("%s/_fake/runners/%d/%s", rf.FakeAPI, rf.AgentID, what), "application/json", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
