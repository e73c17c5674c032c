// Command fakerunner stands in for actions/runner's bin/Runner.Listener in
// tests: `configure` registers with a registration token and writes .runner;
// `run` reads its JIT config (ACTIONS_RUNNER_INPUT_JITCONFIG, removed from
// its environment as the real runner does) or .runner, prints what the real
// listener prints, runs the job hooks as job steps, and tells the fake
// GitHub (whose URL its config carries) when it goes online, starts a job
// and ends it.
//
// What it does is scripted by fake-behaviour.json in the runner's folder:
//
//	{"mode": "job" | "idle" | "crash" | "exit" | "deprecated", "exit": N,
//	 "job_seconds": 0.2, "result": "Succeeded", "dump": "/path/dump.json",
//	 "update_exits": 1, "update_code": 3, "update_seconds": 1.5,
//	 "echo_secret": true, "daemon": true, "escape": true, "pid_file": "/path",
//	 "long_line": 2097152, "long_line_text": "…", "long_line_text_at": 16000,
//	 "flood": 20000, "ignore_term": true, "step_ignores": ["INT", "TERM"],
//	 "step_script": "rm -rf /tmp/*", "post_seconds": 2, "upload_seconds": 3,
//	 "fail_hook": "started", "time_scale": 10}
//
// As the real listener: `configure` refuses when .runner exists; `run`
// writes the JIT config's files into the runner's folder and needs to
// write there and in _work; a deprecated runner exits 7 only when
// ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE is set, else 1.
//
// A job runs as Runner.Worker runs it: the started hook as the step "Set
// up runner" (its failure fails the job: result Failed, the job's steps
// skipped), the workflow's step as a child process in the listener's
// process group, post steps, the completed hook as the step "Complete
// runner" (its failure fails the job), then the finalization (log upload).
// SIGINT or SIGTERM during the job shuts the runner down as the real one
// does: SIGINT prints "Exiting..."; the step gets SIGINT, 7.5 s later
// SIGTERM, 2.5 s later SIGKILL; the steps after it, post steps and the
// completed hook are skipped; after the finalization the listener prints
// "Job test-job completed with result: Canceled", tells the fake GitHub,
// and exits 0. On SIGTERM the listener exits 30 s after the signal,
// finished or not (its unload handler's bound). time_scale speeds these
// timings (and post_seconds, upload_seconds) up, keeping their ratios.
//
// The fake GitHub protocol (POST, under the URL in .runner's fakeApi):
//
//   - /_fake/runners/{id}/online: the listener is connected.
//   - /_fake/runners/{id}/job: the listener asks for a job. 202: none yet,
//     it asks again every 100 ms (a signal meanwhile ends it as an idle
//     listener); 404: the runner was removed, it exits 1 as the real one
//     does when its registration is gone; any other answer (204) starts
//     the job.
//   - /_fake/runners/{id}/done with the JSON body
//     {"result": "Succeeded" | "Failed" | "Canceled"}: the job ended, sent
//     after the "completed with result" line and before the listener exits.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

type behaviour struct {
	Mode        string  `json:"mode"`
	Exit        int     `json:"exit"`
	JobSeconds  float64 `json:"job_seconds"`
	Result      string  `json:"result"`
	Dump        string  `json:"dump"`
	UpdateExits int     `json:"update_exits"`
	// UpdateCode is the exit code of an update exit (default 4, the
	// ephemeral runner's). An update exit starts a detached updater, as
	// the real listener starts _update.sh: it waits for the listener to
	// exit, then for UpdateSeconds, swaps bin/ (renames
	// bin/.fake-swap-pending to bin/.fake-swapped) and writes
	// update.finished. A listener started while the swap is pending fails.
	UpdateCode    int     `json:"update_code"`
	UpdateSeconds float64 `json:"update_seconds"`
	EchoSecret    bool    `json:"echo_secret"`
	// Daemon leaves `sleep 137` behind in a session of its own, holding
	// the output, as a workflow step that starts a server can.
	Daemon bool `json:"daemon"`
	// Escape leaves `sleep 300` behind in a session of its own, not
	// holding the output: it survives a kill of the listener's group.
	Escape bool `json:"escape"`
	// PidFile gets the pids of the processes Daemon and Escape start,
	// and the job's step's once its signal dispositions are set, one a
	// line.
	PidFile string `json:"pid_file"`
	// LongLine prints one line of that many bytes while the job runs,
	// with LongLineText written into it at LongLineTextAt, then the line
	// "after the long line".
	LongLine       int    `json:"long_line"`
	LongLineText   string `json:"long_line_text"`
	LongLineTextAt int    `json:"long_line_text_at"`
	// Flood prints that many numbered lines while the job runs.
	Flood int `json:"flood"`
	// IgnoreTerm ignores SIGTERM and SIGINT: only SIGKILL ends it.
	IgnoreTerm bool `json:"ignore_term"`
	// StepIgnores lists the signals ("INT", "TERM") the job's step
	// ignores, as a step that traps them does.
	StepIgnores []string `json:"step_ignores"`
	// StepScript is a shell command the job's step runs first (sh -c),
	// as the job's user, with the job's environment.
	StepScript string `json:"step_script"`
	// PostSeconds is how long the post steps run after the main step.
	PostSeconds float64 `json:"post_seconds"`
	// UploadSeconds is how long the worker's finalization (log upload,
	// the job-completed event) takes, after the steps.
	UploadSeconds float64 `json:"upload_seconds"`
	// FailHook names a job hook ("started", "completed") whose step
	// fails (exit 1), as a broken hook script does.
	FailHook string `json:"fail_hook"`
	// TimeScale (default 1) runs the runner's own timings (7.5 s, 2.5 s,
	// 30 s), PostSeconds and UploadSeconds that many times faster.
	TimeScale float64 `json:"time_scale"`
}

type runnerFile struct {
	AgentID   int64  `json:"agentId"`
	AgentName string `json:"agentName"`
	GitHubURL string `json:"gitHubUrl"`
	FakeAPI   string `json:"fakeApi"`
}

func main() {
	exe, _ := os.Executable()
	root := filepath.Dir(filepath.Dir(exe))
	if len(os.Args) < 2 {
		fail("usage: Runner.Listener configure|run")
	}
	switch os.Args[1] {
	case "configure":
		configure(root)
	case "run":
		run(root)
	case "_update":
		update(root)
	case "_step":
		step()
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "fake runner:", msg)
	os.Exit(1)
}

func ts() string { return time.Now().UTC().Format("2006-01-02 15:04:05Z") }

func configure(root string) {
	args := map[string]string{}
	for i := 2; i < len(os.Args); i++ {
		if strings.HasPrefix(os.Args[i], "--") && i+1 < len(os.Args) && !strings.HasPrefix(os.Args[i+1], "--") {
			args[os.Args[i]] = os.Args[i+1]
			i++
		}
	}
	if _, err := os.Stat(filepath.Join(root, ".runner")); err == nil {
		fail("Cannot configure the runner because it is already configured. To reconfigure the runner, run 'config.cmd remove' or './config.sh remove' first.")
	}
	token := os.Getenv("ACTIONS_RUNNER_INPUT_TOKEN")
	if token == "" {
		fail("no registration token")
	}
	u, err := url.Parse(args["--url"])
	if err != nil || u.Host == "" {
		fail("bad --url")
	}
	api := u.Scheme + "://" + u.Host
	body, _ := json.Marshal(map[string]any{"token": token, "name": args["--name"], "labels": strings.Split(args["--labels"], ","),
		"disable_update": slices.Contains(os.Args, "--disableupdate"), "replace": slices.Contains(os.Args, "--replace")})
	resp, err := http.Post(api+"/_fake/register", "application/json", bytes.NewReader(body))
	if err != nil {
		fail(err.Error())
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		fail(fmt.Sprintf("registration refused: HTTP %d", resp.StatusCode))
	}
	var reg struct{ ID int64 }
	json.NewDecoder(resp.Body).Decode(&reg)
	rf, _ := json.Marshal(runnerFile{AgentID: reg.ID, AgentName: args["--name"], GitHubURL: args["--url"], FakeAPI: api})
	if err := os.WriteFile(filepath.Join(root, ".runner"), append([]byte("\ufeff"), rf...), 0o600); err != nil {
		fail(err.Error())
	}
	fmt.Println("√ Runner successfully added")
	fmt.Println("√ Settings Saved.")
}

func loadConfig(root string) (runnerFile, string) {
	var rf runnerFile
	jit := os.Getenv("ACTIONS_RUNNER_INPUT_JITCONFIG")
	os.Unsetenv("ACTIONS_RUNNER_INPUT_JITCONFIG") // as the real runner does
	if jit != "" {
		raw, err := base64.StdEncoding.DecodeString(jit)
		if err != nil {
			fail("invalid JIT config")
		}
		var files map[string]string
		if json.Unmarshal(raw, &files) != nil {
			fail("invalid JIT config")
		}
		b, _ := base64.StdEncoding.DecodeString(files[".runner"])
		if json.Unmarshal(b, &rf) != nil || rf.AgentID == 0 {
			fail("invalid JIT config")
		}
		saveFiles(root, files)
		return rf, jit
	}
	b, err := os.ReadFile(filepath.Join(root, ".runner"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "Not configured. Run config.(sh/cmd) to configure the runner.")
		os.Exit(1)
	}
	json.Unmarshal(bytes.TrimPrefix(b, []byte("\ufeff")), &rf)
	return rf, ""
}

// saveFiles writes the JIT config's files into the runner's folder, as the
// real listener does before it loads its settings.
func saveFiles(root string, files map[string]string) {
	for name, content := range files {
		b, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			fail("invalid JIT config")
		}
		if err := os.WriteFile(filepath.Join(root, name), b, 0o600); err != nil {
			fail(err.Error())
		}
	}
}

// checkWork fails as the real runner does when it cannot write to _work.
func checkWork(root string) {
	work := filepath.Join(root, "_work")
	if _, err := os.Stat(work); err != nil {
		return
	}
	probe := filepath.Join(work, ".fake-probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		fail(fmt.Sprintf("Access to the path '%s' is denied.", work))
	}
	os.Remove(probe)
}

func run(root string) {
	var b behaviour
	if raw, err := os.ReadFile(filepath.Join(root, "fake-behaviour.json")); err == nil {
		json.Unmarshal(raw, &b)
	}
	if b.Mode == "" {
		b.Mode = "job"
	}
	if b.Result == "" {
		b.Result = "Succeeded"
	}
	if _, err := os.Stat(filepath.Join(root, "bin", ".fake-swap-pending")); err == nil {
		fail("started while the update was still swapping bin/")
	}
	rf, jit := loadConfig(root)
	checkWork(root)
	selfUpdate(root, b)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	if b.IgnoreTerm {
		term = nil // the signals are caught, and nothing reads them
	}
	fmt.Println("√ Connected to GitHub")
	fmt.Println("Current runner version: '2.337.0'")
	if b.EchoSecret && jit != "" {
		fmt.Println("debug: jit config " + jit)
	}
	fmt.Println(ts() + ": Listening for Jobs")
	post(rf, "online", nil)

	switch b.Mode {
	case "exit":
		os.Exit(b.Exit)
	case "deprecated":
		fmt.Fprintln(os.Stderr, "An error occurred: Runner version v2.300.0 is deprecated and cannot receive messages.")
		if v := os.Getenv("ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE"); v == "1" || strings.EqualFold(v, "true") {
			os.Exit(7)
		}
		os.Exit(1)
	case "crash":
		fmt.Println("Unhandled exception. System.NullReferenceException")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	case "idle":
		idleExit(<-term)
	}
	// mode "job"
	waitJob(rf, term)
	fmt.Println(ts() + ": Running job: test-job")
	result := runJob(b, term)
	fmt.Printf("%s: Job test-job completed with result: %s\n", ts(), result)
	done(rf, result)
	os.Exit(0)
}

func notePid(b behaviour, c *exec.Cmd) {
	if b.PidFile == "" || c.Process == nil {
		return
	}
	f, err := os.OpenFile(b.PidFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o666)
	if err == nil {
		fmt.Fprintln(f, c.Process.Pid)
		f.Close()
	}
}

// selfUpdate exits for an update the first UpdateExits times, after
// starting the detached updater.
func selfUpdate(root string, b behaviour) {
	if b.UpdateExits <= 0 {
		return
	}
	counter := filepath.Join(root, ".fake-update-count")
	n, _ := os.ReadFile(counter)
	if len(n) >= b.UpdateExits {
		return
	}
	os.WriteFile(counter, append(n, 'x'), 0o666)
	fmt.Println(ts() + ": Runner update in progress, do not shutdown runner.")
	os.Remove(filepath.Join(root, "update.finished"))
	if err := os.WriteFile(filepath.Join(root, "bin", ".fake-swap-pending"), nil, 0o644); err != nil {
		fail(err.Error())
	}
	exe, _ := os.Executable()
	// As the real listener starts _update.sh: same process group, same
	// output, same folder.
	u := exec.Command(exe, "_update", fmt.Sprint(os.Getpid()), fmt.Sprint(b.UpdateSeconds))
	u.Stdout, u.Stderr = os.Stdout, os.Stderr
	if err := u.Start(); err != nil {
		fail(err.Error())
	}
	code := b.UpdateCode
	if code == 0 {
		code = 4
	}
	os.Exit(code)
}

// update is the fake _update.sh: it waits for the listener (os.Args[2])
// to exit, then os.Args[3] seconds, swaps bin/ and writes update.finished.
func update(root string) {
	var pid int
	var secs float64
	fmt.Sscan(os.Args[2], &pid)
	fmt.Sscan(os.Args[3], &secs)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			break
		}
	}
	time.Sleep(time.Duration(secs * float64(time.Second)))
	bin := filepath.Join(root, "bin")
	if err := os.Rename(filepath.Join(bin, ".fake-swap-pending"), filepath.Join(bin, ".fake-swapped")); err != nil {
		os.Exit(1)
	}
	os.WriteFile(filepath.Join(root, "update.finished"), nil, 0o644)
}

func printLong(b behaviour) {
	if b.LongLine <= 0 {
		return
	}
	line := bytes.Repeat([]byte("L"), b.LongLine)
	if b.LongLineText != "" && b.LongLineTextAt >= 0 && b.LongLineTextAt < len(line) {
		copy(line[b.LongLineTextAt:], b.LongLineText)
	}
	os.Stdout.Write(append(line, '\n'))
	fmt.Println("after the long line")
}

// dump records what a workflow job could see: the environment, the uid,
// whether the worker's (parent's) environment is readable, and argv of
// every process it can list.
func dump(path string) {
	out := map[string]any{"env": os.Environ(), "uid": os.Getuid(), "args": os.Args}
	_, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", os.Getppid()))
	out["parent_environ_readable"] = err == nil
	var cmdlines []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil {
			cmdlines = append(cmdlines, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	out["cmdlines"] = cmdlines
	b, _ := json.MarshalIndent(out, "", "  ")
	os.WriteFile(path, b, 0o644)
}
