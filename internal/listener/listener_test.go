package listener_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/listener"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

var fakeRunnerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runner-test-")
	if err != nil {
		panic(err)
	}
	fakeRunnerBin = filepath.Join(dir, "Runner.Listener")
	if out, err := exec.Command("go", "build", "-o", fakeRunnerBin, "./fakerunner").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fakerunner: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if err := releaseUser(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// fakeRoot is a runner folder with the fake listener, configured (.runner)
// and scripted by behaviour.
func fakeRoot(t *testing.T, behaviour map[string]any) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(fakeRunnerBin)
	if err != nil {
		t.Fatal(err)
	}
	// A copy, not a link: the fake finds its folder from its own path.
	if err := os.WriteFile(filepath.Join(root, "bin", "Runner.Listener"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// Port 1 refuses at once: the fake's notifications to GitHub go nowhere.
	rf := `{"agentId": 1, "agentName": "t", "gitHubUrl": "https://github.com/o", "fakeApi": "http://127.0.0.1:1"}`
	b, _ := json.Marshal(behaviour)
	for name, data := range map[string][]byte{".runner": []byte(rf), "fake-behaviour.json": b} {
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }

func (l *lines) all() []string { l.mu.Lock(); defer l.mu.Unlock(); return append([]string{}, l.l...) }

func config(root string, red *secret.Redactor, out *lines) listener.Config {
	return listener.Config{
		Root:        root,
		User:        "root",
		BaseEnv:     []string{"PATH=" + os.Getenv("PATH")},
		IdleTimeout: 30 * time.Second,
		JobTimeout:  30 * time.Second,
		StopGrace:   2 * time.Second,
		// Short, so that restarts after exit 2 keep the tests fast.
		RetryBackoff: 50 * time.Millisecond,
		Redactor:     red,
		OnLine:       out.add,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// A line over a megabyte is cut with a marker, redacted up to the cut, and
// output handling goes on: later lines arrive and the job is seen to end
// with its result.
func TestLongLineDoesNotStopOutput(t *testing.T) {
	sec := "ghp_" + strings.Repeat("S3cr3t", 6)
	root := fakeRoot(t, map[string]any{"job_seconds": 0.1, "long_line": 2 << 20,
		"long_line_text": sec, "long_line_text_at": 16<<10 - 20})
	red := &secret.Redactor{}
	red.Add(secret.New(sec))
	var out lines
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := listener.Run(ctx, config(root, red, &out))
	if err != nil {
		t.Fatal(err)
	}
	if !res.JobCompleted || res.JobResult != "Succeeded" {
		t.Errorf("job completed %v with result %q: the end of the job was not seen", res.JobCompleted, res.JobResult)
	}
	got := out.all()
	var long, after, done bool
	for _, l := range got {
		switch {
		case strings.HasPrefix(l, "LLLL"):
			long = true
			if len(l) > 16<<10+100 || !strings.Contains(l, "bytes cut") {
				t.Errorf("long line passed on with %d bytes, ending %q", len(l), l[max(len(l)-80, 0):])
			}
			if strings.Contains(l, sec[:8]) {
				t.Error("the secret's start is in the cut line")
			}
		case l == "after the long line":
			after = true
		case strings.Contains(l, "completed with result: Succeeded"):
			done = true
		}
	}
	if !long || !after || !done {
		t.Errorf("long line %v, the line after it %v, the completion line %v; %d lines", long, after, done, len(got))
	}
}

// A flood of listener output reaches the platform whole, in few posts.
func TestFloodReachesPlatform(t *testing.T) {
	const n = 20000
	root := fakeRoot(t, map[string]any{"job_seconds": 0.1, "flood": n})
	p := runpodtest.New()
	defer p.Close()
	env := p.Env("pod-flood")
	cfg, err := runpod.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var out lines
	h := runpod.HandlerFunc(func(ctx context.Context, job *runpod.Job, u runpod.Updater) (any, error) {
		c := config(root, &secret.Redactor{}, &out)
		c.OnLine = func(l string) { u.Stream(l) }
		res, err := listener.Run(ctx, c)
		return res, err
	})
	w, err := runpod.NewJobLoop(runpod.Options{Config: cfg, Handler: h, Refresh: true, TakeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.AddJob("flood", 1)
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	post, err := p.WaitFinal("flood", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if o, _ := post.Body["output"].(map[string]any); o["job_result"] != "Succeeded" {
		t.Errorf("result %v", post.Body)
	}
	next := 0
	for _, it := range p.StreamItems() {
		if s, _ := it.(string); s == fmt.Sprintf("flood line %06d", next) {
			next++
		}
	}
	posts := len(p.Streams())
	if next != n {
		t.Errorf("%d of %d flood lines reached the platform in order", next, n)
	}
	if posts > n/50 {
		t.Errorf("%d stream posts for %d lines", posts, n)
	}
	t.Logf("%d runner lines: %d stream posts (%.0f lines a post), job result posted %v after the job was queued", n, posts, float64(n)/float64(max(posts, 1)), took.Round(time.Millisecond))
}

// run runs the listener, bounded in time: ctx ends after 20 s, and the
// test fails if Run has not returned 10 s later.
func run(t *testing.T, ctx context.Context, cfg listener.Config) (*listener.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	type ran struct {
		res *listener.Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := listener.Run(ctx, cfg)
		done <- ran{res, err}
	}()
	var r ran
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s")
	}
	if r.res == nil {
		t.Fatalf("Run returned no result (error %v)", r.err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("Run did not end within 20 s: %v", r.err)
	}
	return r.res, r.err
}

// signals records the signals the session sends, and whether Run had
// returned when it sent them; once Run returned, none is sent on (the pid
// may belong to another process by then).
type signals struct {
	mu       sync.Mutex
	returned bool
	sent     []string
}

// kill records sig, as "SIGNAL to the listener" or "SIGNAL to the group"
// (a negative pid), and sends it.
func (s *signals) kill(pid int, sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	to := " to the listener"
	if pid < 0 {
		to = " to the group"
	}
	if s.returned {
		s.sent = append(s.sent, "after Run returned: "+sig.String()+to)
		return nil
	}
	s.sent = append(s.sent, sig.String()+to)
	return syscall.Kill(pid, sig)
}

func (s *signals) runReturned() { s.mu.Lock(); s.returned = true; s.mu.Unlock() }

func (s *signals) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.sent...)
}

// The SIGKILL that follows a stop's SIGTERM belongs to the session: when
// the listener exits within the grace, it is never sent, not even after
// Run returned.
func TestNoSIGKILLAfterTheSessionEnds(t *testing.T) {
	root := fakeRoot(t, map[string]any{"mode": "idle"})
	var out lines
	cfg := config(root, &secret.Redactor{}, &out)
	cfg.IdleTimeout, cfg.StopGrace = 100*time.Millisecond, 300*time.Millisecond
	var sig signals
	listener.WatchKill(&cfg, sig.kill)
	res, err := run(t, context.Background(), cfg)
	sig.runReturned()
	if err != nil || !res.IdleTimedOut {
		t.Fatalf("idle timed out %v, error %v", res.IdleTimedOut, err)
	}
	time.Sleep(2 * cfg.StopGrace) // when the grace's SIGKILL would come
	for _, s := range sig.all() {
		if strings.HasPrefix(s, "after") {
			t.Errorf("signals %q: the grace timer outlived the session", sig.all())
			break
		}
	}
}

// The listener's exit codes: 0 ends the session; 2 (retryable) and 3/4
// (self-update) restart it up to MaxRestarts times; the others are errors
// that say what the code means.
func TestExitCodes(t *testing.T) {
	cases := []struct {
		name      string
		behaviour map[string]any
		code      int
		restarts  int
		err       string // "" for none
	}{
		{"clean exit", map[string]any{"mode": "exit", "exit": 0}, 0, 0, ""},
		{"terminated", map[string]any{"mode": "exit", "exit": 1}, 1, 0, "runner exited with code 1: terminated: the runner's registration was deleted"},
		{"retryable", map[string]any{"mode": "exit", "exit": 2}, 2, 2, "runner exited with code 2: retryable failure, and 2 restarts did not help"},
		{"self-update", map[string]any{"update_exits": 3, "update_code": 3}, 3, 2, "the runner updated itself, and 2 restarts did not help"},
		{"session conflict", map[string]any{"mode": "exit", "exit": 5}, 5, 0, "code 5: session conflict"},
		{"deprecated", map[string]any{"mode": "exit", "exit": 7}, 7, 0, "code 7: runner version deprecated"},
		// The real listener gives 7 only when asked to
		// (ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE), 1 otherwise.
		{"deprecated, as the real listener says it", map[string]any{"mode": "deprecated"}, 7, 0, "code 7: runner version deprecated"},
		{"unknown", map[string]any{"mode": "exit", "exit": 9}, 9, 0, "code 9: unexpected exit"},
		{"crash", map[string]any{"mode": "crash"}, -1, 0, "runner crashed: signal: killed"},
		{"updated, then a job", map[string]any{"update_exits": 2, "job_seconds": 0}, 0, 2, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out lines
			cfg := config(fakeRoot(t, c.behaviour), &secret.Redactor{}, &out)
			cfg.MaxRestarts = 2
			res, err := run(t, context.Background(), cfg)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Errorf("error %v, want %q", err, c.err)
			}
			var ee *listener.ExitError
			if c.code > 0 && (!errors.As(err, &ee) || ee.Code != c.code) {
				t.Errorf("error %#v, want an *ExitError with code %d", err, c.code)
			}
			if res.ExitCode != c.code || res.Restarts != c.restarts {
				t.Errorf("exit code %d after %d restarts, want %d after %d", res.ExitCode, res.Restarts, c.code, c.restarts)
			}
		})
	}
}

func TestRunnerNotInstalled(t *testing.T) {
	var out lines
	_, err := run(t, context.Background(), config(t.TempDir(), &secret.Redactor{}, &out))
	if err == nil || !strings.Contains(err.Error(), "runner not installed") {
		t.Errorf("error %v", err)
	}
}

// The job's start, end and result are read from the output; the idle and
// job timeouts and ctx stop the listener, which cancels a running job.
func TestJobTimeoutsAndCancel(t *testing.T) {
	cases := []struct {
		name      string
		behaviour map[string]any
		idle, job time.Duration
		cancel    bool
		want      listener.Result
	}{
		{"job done", map[string]any{"job_seconds": 0.1}, 0, 0, false,
			listener.Result{JobStarted: true, JobCompleted: true, JobName: "test-job", JobResult: "Succeeded"}},
		{"job failed", map[string]any{"job_seconds": 0.1, "result": "Failed"}, 0, 0, false,
			listener.Result{JobStarted: true, JobCompleted: true, JobName: "test-job", JobResult: "Failed"}},
		{"no idle timeout once the job started", map[string]any{"job_seconds": 0.6}, 300 * time.Millisecond, 0, false,
			listener.Result{JobStarted: true, JobCompleted: true, JobName: "test-job", JobResult: "Succeeded"}},
		{"idle timeout", map[string]any{"mode": "idle"}, 200 * time.Millisecond, 0, false,
			listener.Result{IdleTimedOut: true}},
		{"job timeout", map[string]any{"job_seconds": 60}, 0, 300 * time.Millisecond, false,
			listener.Result{JobStarted: true, JobCompleted: true, JobName: "test-job", JobResult: "Canceled", JobTimedOut: true}},
		{"cancelled", map[string]any{"job_seconds": 60}, 0, 0, true,
			listener.Result{JobStarted: true, JobCompleted: true, JobName: "test-job", JobResult: "Canceled", Cancelled: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out lines
			cfg := config(fakeRoot(t, c.behaviour), &secret.Redactor{}, &out)
			cfg.IdleTimeout, cfg.JobTimeout = c.idle, c.job
			cfg.OnLine = func(l string) {
				if c.cancel && strings.Contains(l, "Running job:") {
					cancel()
				}
			}
			res, err := run(t, ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := listener.Result{JobStarted: res.JobStarted, JobCompleted: res.JobCompleted, JobName: res.JobName, JobResult: res.JobResult,
				IdleTimedOut: res.IdleTimedOut, JobTimedOut: res.JobTimedOut, Cancelled: res.Cancelled}
			if got != c.want {
				t.Errorf("result\n %+v, want\n %+v", got, c.want)
			}
			if res.JobStarted && (res.JobStartedAt.Before(res.Started) || res.Ended.Before(res.JobStartedAt)) {
				t.Errorf("times: started %v, job started %v, ended %v", res.Started, res.JobStartedAt, res.Ended)
			}
		})
	}
}

// jitConfig is a JIT config the fake listener accepts.
func jitConfig(t *testing.T) string {
	rf, _ := json.Marshal(map[string]any{"agentId": 7, "agentName": "jit", "gitHubUrl": "https://github.com/o", "fakeApi": "http://127.0.0.1:1"})
	files, _ := json.Marshal(map[string]string{".runner": base64.StdEncoding.EncodeToString(rf)})
	return base64.StdEncoding.EncodeToString(files)
}

// What a workflow job sees: no worker secrets, the runner user's HOME and
// names, the supervisor's job-started hook (not the worker's environment's), and the JIT config
// neither in the environment nor in any argv; output naming it redacted.
func TestRunnerEnvironment(t *testing.T) {
	dumpFile := filepath.Join(t.TempDir(), "dump.json")
	root := fakeRoot(t, map[string]any{"job_seconds": 0, "dump": dumpFile, "echo_secret": true})
	jit := jitConfig(t)
	var out lines
	cfg := config(root, &secret.Redactor{}, &out)
	cfg.JIT = secret.New(jit)
	cfg.BaseEnv = []string{"PATH=" + os.Getenv("PATH"), "HOME=/home/worker", "USER=worker", "LOGNAME=worker",
		"GITHUB_PAT=ghp_x", "RUNPOD_AI_API_KEY=rpa_x", "GITHUB_APP_PRIVATE_KEY=k", "ACTIONS_RUNNER_INPUT_JITCONFIG=stale",
		"ACTIONS_RUNNER_HOOK_JOB_STARTED=/tmp/evil.sh", "RUNNER_ALLOW_RUNASROOT=0", "MY_SECRET_A=a", "KEEP=1",
		"ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT=1", "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=0"}
	cfg.Deny = []string{"MY_SECRET_*"}
	res, err := run(t, context.Background(), cfg)
	if err != nil || res.JobResult != "Succeeded" {
		t.Fatalf("result %+v, error %v", res, err)
	}
	raw, err := os.ReadFile(dumpFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Env      []string `json:"env"`
		Args     []string `json:"args"`
		Cmdlines []string `json:"cmdlines"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range d.Env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := env[k]; dup {
			t.Errorf("%s set twice", k)
		}
		env[k] = v
	}
	for k, want := range map[string]string{"HOME": "/root", "USER": "root", "LOGNAME": "root", "RUNNER_ALLOW_RUNASROOT": "1", "KEEP": "1",
		"ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE": "1"} {
		if env[k] != want {
			t.Errorf("%s=%q, want %q", k, env[k], want)
		}
	}
	for _, k := range []string{"GITHUB_PAT", "RUNPOD_AI_API_KEY", "GITHUB_APP_PRIVATE_KEY", "MY_SECRET_A", "ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s reached the job", k)
		}
	}
	if h := env["ACTIONS_RUNNER_HOOK_JOB_STARTED"]; !strings.Contains(h, "wgr-hooks-") {
		t.Errorf("ACTIONS_RUNNER_HOOK_JOB_STARTED=%q: not the supervisor's hook", h)
	}
	if h, ok := env["ACTIONS_RUNNER_HOOK_JOB_COMPLETED"]; ok {
		t.Errorf("ACTIONS_RUNNER_HOOK_JOB_COMPLETED=%q: the job's end comes from the listener's output alone", h)
	}
	if strings.Join(d.Args[1:], " ") != "run" {
		t.Errorf("listener argv %q", d.Args)
	}
	for _, c := range append(d.Cmdlines, d.Env...) {
		if strings.Contains(c, jit) {
			t.Errorf("the JIT config is visible to the job: %.80q", c)
		}
	}
	for _, l := range out.all() {
		if strings.Contains(l, jit) {
			t.Errorf("output line not redacted: %.80q", l)
		}
	}
}

func TestScrubEnv(t *testing.T) {
	env := []string{"PATH=/bin", "LANG=C", "HOME=/root", "GITHUB_PAT=p", "GITHUB_TOKEN=t", "GH_TOKEN=g", "GITHUB_APP_ID=1",
		"RUNPOD_POD_ID=x", "ACTIONS_RUNNER_INPUT_TOKEN=r", "RUNNER_ENV_DENY=A", "AWS_SECRET_ACCESS_KEY=s", "HF_TOKEN=h",
		"HUGGING_FACE_HUB_TOKEN=h", "ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT=1", "GITHUB_PATH=kept", "A=1", "AB=2", "B_X=3", "NO_EQUALS"}
	cases := []struct {
		name        string
		deny, allow []string
		want        string
	}{
		{"defaults", nil, nil, "PATH=/bin LANG=C HOME=/root GITHUB_PATH=kept A=1 AB=2 B_X=3 NO_EQUALS"},
		{"deny names and prefixes", []string{"A", "B_*"}, nil, "PATH=/bin LANG=C HOME=/root GITHUB_PATH=kept AB=2 NO_EQUALS"},
		{"allow keeps the basics", nil, []string{"A*"}, "PATH=/bin LANG=C A=1 AB=2"},
		{"allow never brings back a default deny", nil, []string{"GITHUB_*", "HF_TOKEN"}, "PATH=/bin LANG=C GITHUB_PATH=kept"},
		{"deny beats allow", []string{"AB"}, []string{"A*"}, "PATH=/bin LANG=C A=1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := strings.Join(listener.ScrubEnv(env, c.deny, c.allow), " "); got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestReadRunnerID(t *testing.T) {
	cases := []struct {
		name, file string
		id         int64
		err        string
	}{
		{"plain", `{"agentId": 42, "agentName": "r"}`, 42, ""},
		{"with a BOM", "\ufeff" + `{"agentId": 9007199254740993}`, 9007199254740993, ""},
		{"not JSON", `agentId=1`, 0, ".runner: invalid character"},
		{"no id", `{"agentName": "r"}`, 0, `.runner: agentId "" is not a runner id`},
		{"id zero", `{"agentId": 0}`, 0, `.runner: agentId "0" is not a runner id`},
		{"no file", "", 0, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			if c.file != "" {
				if err := os.WriteFile(filepath.Join(root, ".runner"), []byte(c.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			id, err := listener.ReadRunnerID(root)
			if id != c.id || c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Errorf("%d, %v; want %d, %q", id, err, c.id, c.err)
			}
		})
	}
}

// Configure registers with the token through the environment (the fake
// listener reads it only from ACTIONS_RUNNER_INPUT_TOKEN), and
// ReadRunnerID reads the id from the .runner file the listener writes
// (with a BOM, as the real one does); a refused registration is an error
// that says so.
func TestConfigureThenReadRunnerID(t *testing.T) {
	const token = "AAAREGISTRATIONTOKEN0123456789"
	refuse := false
	var mu sync.Mutex
	var got map[string]any
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/_fake/register" || refuse {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id": 4242}`)
	}))
	defer gh.Close()
	root := fakeRoot(t, nil)
	os.Remove(filepath.Join(root, ".runner"))
	var out lines
	cfg := config(root, &secret.Redactor{}, &out)
	o := listener.ConfigureOptions{URL: gh.URL + "/o", Token: secret.New(token), Name: "r-1", Labels: []string{"a", "b"}, WorkFolder: "_work"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := listener.Configure(ctx, cfg, o); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	// --disableupdate would leave a runner older than GitHub's window
	// listening for jobs it never gets.
	if got["token"] != token || got["name"] != "r-1" || got["disable_update"] != false {
		t.Errorf("registration %v", got)
	}
	mu.Unlock()
	if id, err := listener.ReadRunnerID(root); id != 4242 || err != nil {
		t.Errorf("runner id %d, %v", id, err)
	}
	if !slices.Contains(out.all(), "√ Runner successfully added") {
		t.Errorf("output %q", out.all())
	}
	mu.Lock()
	refuse = true
	mu.Unlock()
	err := listener.Configure(ctx, cfg, o)
	if err == nil || !strings.Contains(err.Error(), "configure runner: exit status 1: fake runner: registration refused: HTTP 403") {
		t.Errorf("refused registration: %v", err)
	}
}
