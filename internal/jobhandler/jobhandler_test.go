package jobhandler

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/listener/runnertest"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

const (
	pat = "ghp_TESTPAT0123456789abcdefghijklmnopqrstuv"
)

var fakeRunnerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fakerunner-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	fakeRunnerBin = filepath.Join(dir, "Runner.Listener")
	if out, err := exec.Command("go", "build", "-o", fakeRunnerBin, "../listener/fakerunner").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fake runner: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if lease != nil {
		if err := lease.Release(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// runnerUser returns a user to run the fake runner as: when the tests run
// as root, an account of their own (runnertest.LeaseUser), deleted when
// they end.
var (
	userOnce sync.Once
	userErr  error
	lease    *runnertest.Lease
)

func runnerUser(t *testing.T) (*user.User, bool) {
	t.Helper()
	userOnce.Do(func() { lease, userErr = runnertest.LeaseUser() })
	if userErr != nil {
		return nil, false
	}
	return lease.User, true
}

type env struct {
	gh      *githubtest.GitHub
	root    string
	logs    *runpodtest.LogBuffer
	handler *Handler
	dumpDir string
	user    string
	// env is the endpoint's environment the handler sees.
	env map[string]string
}

// newEnv installs the fake runner into a fresh runner folder owned by the
// test user (or root) and points a handler at a fake GitHub.
func newEnv(t *testing.T, behaviour map[string]any) *env {
	t.Helper()
	base, err := os.MkdirTemp("", "wgr-worker-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	root := filepath.Join(base, "actions-runner")
	dumpDir := filepath.Join(base, "dump")
	sudoersDir := filepath.Join(base, "sudoers.d")
	for _, d := range []string{filepath.Join(root, "bin"), dumpDir, sudoersDir} {
		os.MkdirAll(d, 0o755)
	}
	os.Chmod(dumpDir, 0o777)
	b, _ := os.ReadFile(fakeRunnerBin)
	os.WriteFile(filepath.Join(root, "bin", "Runner.Listener"), b, 0o755)
	if behaviour == nil {
		behaviour = map[string]any{}
	}
	if _, ok := behaviour["dump"]; !ok {
		behaviour["dump"] = filepath.Join(dumpDir, "dump.json")
	}
	bj, _ := json.Marshal(behaviour)
	os.WriteFile(filepath.Join(root, "fake-behaviour.json"), bj, 0o644)

	e := &env{gh: githubtest.New(pat), root: root, logs: &runpodtest.LogBuffer{}, dumpDir: dumpDir, user: "root"}
	t.Cleanup(e.gh.Close)
	if u, ok := runnerUser(t); ok {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
		e.user = u.Username
	}
	workerEnv := map[string]string{
		"GITHUB_PAT":                   pat,
		"GITHUB_API_URL":               e.gh.URL + "/api/v3/",
		"GITHUB_ORG":                   "my-org",
		"ALLOWED_GITHUB_SCOPES":        "my-org,octo/hello-world,octo/repo,enterprises/acme",
		"WGR_TEST_ALLOW_HTTP_LOOPBACK": "1",
		"RUNPOD_AI_API_KEY":            "rpa_SECRETKEY_abcdef",
		"RUNPOD_WEBHOOK_GET_JOB":       "https://api.runpod.ai/v2/ep/job-take/$RUNPOD_POD_ID",
		"RUNPOD_WEBHOOK_POST_OUTPUT":   "https://api.runpod.ai/v2/ep/job-done/x",
		"PATH":                         os.Getenv("PATH"),
		"WORKER_FLAVOUR":               "gpu",
		"WORKER_CUDA_VERSION":          "12.6.3",
		"HARMLESS":                     "visible",
	}
	if e.user == "root" {
		workerEnv["RUNNER_ALLOW_ROOT"] = "1"
	}
	e.env = workerEnv
	e.handler = &Handler{
		RunnerAccount: e.user,
		Getenv:        func(k string) string { return workerEnv[k] },
		Environ: func() []string {
			var out []string
			for k, v := range workerEnv {
				out = append(out, k+"="+v)
			}
			return out
		},
		RunnerRoot:     root,
		PodID:          "pod42",
		Log:            slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		GitHubBackoff:  20 * time.Millisecond,
		StopGrace:      3 * time.Second,
		CleanupTimeout: 10 * time.Second,
		Probe:          goodGPUHost(t), // the image is a GPU flavour
		SudoersDir:     sudoersDir,
	}
	return e
}

type recorder struct {
	mu       sync.Mutex
	progress []any
	stream   []string
}

func (r *recorder) Progress(v any) { r.mu.Lock(); r.progress = append(r.progress, v); r.mu.Unlock() }
func (r *recorder) Stream(v any) {
	r.mu.Lock()
	r.stream = append(r.stream, fmt.Sprint(v))
	r.mu.Unlock()
}

// run runs one job with input (which gets runner_user set to the env's
// user unless given).
func (e *env) run(t *testing.T, ctx context.Context, input map[string]any) (*Result, error, *recorder) {
	t.Helper()
	if _, ok := input["runner_user"]; !ok && e.user == "root" {
		input["runner_user"] = "root"
	}
	b, _ := json.Marshal(input)
	rec := &recorder{}
	out, err := e.handler.Handle(ctx, &runpod.Job{ID: "job-1", Input: b}, rec)
	res, _ := out.(*Result)
	var je *JobError
	if errors.As(err, &je) {
		res = je.Result
	}
	return res, err, rec
}

// assertClean checks that no runner is left and no secret leaked.
func (e *env) assertClean(t *testing.T, rec *recorder, secrets ...string) {
	t.Helper()
	if rs := e.gh.Runners(); len(rs) != 0 {
		t.Errorf("runners left registered: %+v", rs)
	}
	secrets = append(secrets, pat)
	secrets = append(secrets, e.gh.Issued()...)
	logs := e.logs.String()
	rec.mu.Lock()
	stream := strings.Join(rec.stream, "\n")
	rec.mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("secret %.12s... in the worker's logs", s)
		}
		if strings.Contains(stream, s) {
			t.Errorf("secret %.12s... in the job output stream", s)
		}
	}
}

// dump reads what the fake runner saw as a workflow job would.
func (e *env) dump(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dumpDir, "dump.json"))
	if err != nil {
		t.Fatalf("the fake runner wrote no dump: %v", err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func TestJobRunsAndRunnerIsGone(t *testing.T) {
	for _, tc := range []struct {
		name, scope, prefix, mode string
		ghes                      bool
	}{
		{"org JIT", "my-org", "/orgs/my-org/", "jit", false},
		{"repo JIT", "octo/hello-world", "/repos/octo/hello-world/", "jit", false},
		{"enterprise JIT", "enterprises/acme", "/enterprises/acme/", "jit", false},
		{"org token", "my-org", "/orgs/my-org/", "token", false},
		{"repo token", "octo/hello-world", "/repos/octo/hello-world/", "token", false},
		{"GHES org JIT", "my-org", "/api/v3/orgs/my-org/", "jit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, map[string]any{"echo_secret": true})
			in := map[string]any{"github_org": tc.scope, "labels": []string{"pin-run-123"}, "mode": tc.mode, "github_api_url": e.gh.URL}
			if tc.ghes {
				in["github_api_url"] = e.gh.URL + "/api/v3"
			}
			res, err, rec := e.run(t, context.Background(), in)
			if err != nil {
				t.Fatalf("%v\n%s", err, e.logs.String())
			}
			if !res.JobRan || res.JobResult != "Succeeded" || res.RunnerRemoved != "by GitHub" || res.RunnerID == 0 {
				t.Errorf("result %+v", res)
			}
			wantLabels := []string{"self-hosted", "linux", "x64", "runpod", OwnLabel, "pod42", "gpu", "cuda-12.6.3", "pin-run-123"}
			if strings.Join(res.Labels, ",") != strings.Join(wantLabels, ",") {
				t.Errorf("labels %v", res.Labels)
			}
			sawRegistration := false
			for _, r := range e.gh.Requests() {
				if strings.HasPrefix(strings.TrimPrefix(r.Path, "/api/v3"), strings.TrimPrefix(tc.prefix, "/api/v3")) && (strings.HasSuffix(r.Path, "generate-jitconfig") || strings.HasSuffix(r.Path, "registration-token")) {
					sawRegistration = true
					if tc.mode == "jit" {
						got, _ := json.Marshal(r.Body["labels"])
						want, _ := json.Marshal(wantLabels)
						if string(got) != string(want) || r.Body["runner_group_id"] != 1.0 || !regexp.MustCompile(`^runpod-pod42-job-1-t[0-9]{10}$`).MatchString(fmt.Sprint(r.Body["name"])) {
							t.Errorf("JIT request %v", r.Body)
						}
					}
				}
				if tc.ghes && !strings.HasPrefix(r.Path, "/api/v3/") && !strings.HasPrefix(r.Path, "/_fake/") {
					t.Errorf("GHES request without /api/v3/: %s", r.Path)
				}
			}
			if !sawRegistration {
				t.Errorf("no registration under %s: %v", tc.prefix, e.gh.Requests())
			}
			for _, line := range rec.stream {
				if strings.Contains(line, "debug: jit config") && !strings.Contains(line, "[redacted]") {
					t.Errorf("JIT config not redacted in output: %.60s", line)
				}
			}
			if len(e.gh.Issued()) == 0 {
				t.Fatal("GitHub handed out no JIT config or token")
			}
			e.assertClean(t, rec, e.gh.Issued()...)
			d := e.dump(t)
			envText := fmt.Sprint(d["env"])
			for _, bad := range []string{pat, "rpa_SECRETKEY", "RUNPOD_WEBHOOK", "ACTIONS_RUNNER_INPUT_JITCONFIG", "GITHUB_PAT"} {
				if strings.Contains(envText, bad) {
					t.Errorf("the job's environment holds %s", bad)
				}
			}
			if !strings.Contains(envText, "HARMLESS=visible") {
				t.Error("ordinary variables should reach the runner")
			}
			if strings.Contains(fmt.Sprint(d["cmdlines"]), pat) || strings.Contains(fmt.Sprint(d["args"]), "jit") {
				t.Error("a secret is visible in a process's argv")
			}
			if e.user != "root" {
				if d["uid"] == 0.0 {
					t.Error("the runner ran as root")
				}
				if d["parent_environ_readable"] == true {
					t.Error("the job could read the worker's /proc/<pid>/environ")
				}
			}
		})
	}
}

func TestRunnerUserIsolation(t *testing.T) {
	if _, ok := runnerUser(t); !ok {
		t.Skipf("cannot create or switch to a test user: %v", userErr)
	}
	e := newEnv(t, nil)
	_, err, rec := e.run(t, context.Background(), map[string]any{"github_org": "my-org"})
	if err != nil {
		t.Fatal(err)
	}
	d := e.dump(t)
	if d["uid"] == 0.0 || d["parent_environ_readable"] != false {
		t.Fatalf("uid %v, worker environ readable %v", d["uid"], d["parent_environ_readable"])
	}
	e.assertClean(t, rec)
}

func TestFailuresCleanUp(t *testing.T) {
	tests := []struct {
		name      string
		behaviour map[string]any
		input     map[string]any
		cancelIn  time.Duration
		want      string
		jobRan    bool
	}{
		{name: "idle timeout", behaviour: map[string]any{"mode": "idle"}, input: map[string]any{"idle_timeout": 1}, want: "no workflow job was assigned within idle_timeout 1s"},
		{name: "job timeout", behaviour: map[string]any{"job_seconds": 30}, input: map[string]any{"job_timeout": "1s"}, want: "ran longer than job_timeout 1s", jobRan: true},
		{name: "runner crash", behaviour: map[string]any{"mode": "crash"}, want: "runner crashed"},
		{name: "exit 1", behaviour: map[string]any{"mode": "exit", "exit": 1}, want: "runner exited with code 1: terminated"},
		{name: "exit 5", behaviour: map[string]any{"mode": "exit", "exit": 5}, want: "session conflict"},
		{name: "SIGTERM mid-job", behaviour: map[string]any{"job_seconds": 30}, cancelIn: 700 * time.Millisecond, want: "cancelled", jobRan: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.behaviour)
			ctx := context.Background()
			if tc.cancelIn > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(tc.cancelIn, cancel)
				defer cancel()
			}
			in := map[string]any{"github_org": "my-org"}
			for k, v := range tc.input {
				in[k] = v
			}
			start := time.Now()
			res, err, rec := e.run(t, ctx, in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q\n%s", err, tc.want, e.logs.String())
			}
			if time.Since(start) > 20*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if res == nil || res.JobRan != tc.jobRan || res.RunnerRemoved == "no" || res.RunnerRemoved == "" {
				t.Errorf("result %+v", res)
			}
			if !strings.Contains(err.Error(), "removed: by") {
				t.Errorf("error does not say what became of the runner: %v", err)
			}
			e.assertClean(t, rec)
		})
	}
}

func TestSelfUpdateRestartsListener(t *testing.T) {
	e := newEnv(t, map[string]any{"update_exits": 1})
	res, err, rec := e.run(t, context.Background(), map[string]any{"github_org": "my-org"})
	if err != nil || !res.JobRan || res.Restarts != 1 {
		t.Fatalf("%v %+v\n%s", err, res, e.logs.String())
	}
	if !strings.Contains(e.logs.String(), "out of date") {
		t.Error("a self-update must be logged as a stale image")
	}
	e.assertClean(t, rec)
}

func TestGitHubFailuresRetried(t *testing.T) {
	e := newEnv(t, nil)
	e.gh.Fail(githubtest.Fault{Match: "generate-jitconfig", Status: 500}, githubtest.Fault{Match: "generate-jitconfig", Status: 502},
		githubtest.Fault{Match: "generate-jitconfig", RateLimit: true}, githubtest.Fault{Match: "GET", RetryAfter: 1})
	res, err, rec := e.run(t, context.Background(), map[string]any{"github_org": "my-org"})
	if err != nil || !res.JobRan {
		t.Fatalf("%v %+v", err, res)
	}
	e.assertClean(t, rec)
}

func TestBadPAT(t *testing.T) {
	e := newEnv(t, nil)
	in := map[string]any{"github_org": "my-org", "github_pat": "ghp_WRONGWRONGWRONG"}
	_, err, rec := e.run(t, context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "bad credentials") || !strings.Contains(err.Error(), "admin:org") {
		t.Fatalf("err = %v", err)
	}
	e.assertClean(t, rec, "ghp_WRONGWRONGWRONG")
	e.gh.Fail(githubtest.Fault{Match: "generate-jitconfig", Status: 403})
	_, err, _ = e.run(t, context.Background(), map[string]any{"github_org": "octo/repo"})
	if err == nil || !strings.Contains(err.Error(), "Administration: write") {
		t.Fatalf("403 on a repo: %v", err)
	}
}

func TestInvalidInputTouchesNothing(t *testing.T) {
	e := newEnv(t, nil)
	for _, org := range []string{"a/b/c", "../x", "x;rm -rf /", "", strings.Repeat("a", 200), "-bad", "enterprises/UPPER", "o/.."} {
		_, err, _ := e.run(t, context.Background(), map[string]any{"github_org": org})
		if err == nil || !strings.Contains(err.Error(), "github_org") {
			t.Errorf("github_org %q: err = %v", org, err)
		}
	}
	for name, in := range map[string]map[string]any{
		"unknown field":  {"github_org": "o", "github_orgs": "o"},
		"bad label":      {"github_org": "o", "labels": []string{"a,b"}},
		"bad timeout":    {"github_org": "o", "idle_timeout": "soon"},
		"bad mode":       {"github_org": "o", "mode": "magic"},
		"bad user":       {"github_org": "o", "runner_user": "admin"},
		"input a string": nil,
	} {
		var err error
		if in == nil {
			_, err = e.handler.Handle(context.Background(), &runpod.Job{ID: "j", Input: []byte(`"just a string"`)}, &recorder{})
		} else {
			_, err, _ = e.run(t, context.Background(), in)
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := len(e.gh.Requests()); n != 0 {
		t.Errorf("%d GitHub requests for invalid input", n)
	}
}

func TestRunnerGroupByName(t *testing.T) {
	e := newEnv(t, nil)
	if _, err, _ := e.run(t, context.Background(), map[string]any{"github_org": "my-org", "runner_group": "gpu-runners"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.gh.Requests() {
		if strings.HasSuffix(r.Path, "generate-jitconfig") && r.Body["runner_group_id"] != 7.0 {
			t.Errorf("group id %v", r.Body["runner_group_id"])
		}
	}
	_, err, _ := e.run(t, context.Background(), map[string]any{"github_org": "my-org", "runner_group": "nope"})
	if err == nil || !strings.Contains(err.Error(), `runner_group "nope" does not exist`) {
		t.Errorf("unknown group: %v", err)
	}
}

// End to end through the RunPod fake: a job posted to the platform gives a
// registered runner, one job, a removed runner and a COMPLETED result.
func TestEndToEndThroughRunPod(t *testing.T) {
	e := newEnv(t, nil)
	p := runpodtest.New()
	defer p.Close()
	penv := p.Env("pod42")
	cfg, err := runpod.ConfigFromEnv(func(k string) string { return penv[k] })
	if err != nil {
		t.Fatal(err)
	}
	w, err := runpod.NewJobLoop(runpod.Options{Config: cfg, Handler: e.handler, Logger: e.handler.Log, Refresh: true, TakeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{"github_org": "my-org", "github_api_url": e.gh.URL}
	if e.user == "root" {
		in["runner_user"] = "root"
	}
	p.AddJob("rp-job", in)
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	post, err := p.WaitFinal("rp-job", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := post.Body["output"].(map[string]any)
	if out["job_ran"] != true || out["runner_removed"] != "by GitHub" || post.Body["stopPod"] != true {
		t.Fatalf("result %v", post.Body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.assertClean(t, &recorder{}, p.APIKey)
	for _, s := range p.Streams() {
		if strings.Contains(s.RawBody, pat) {
			t.Error("PAT in a stream post")
		}
	}
}

func TestSelfTest(t *testing.T) {
	e := newEnv(t, nil)
	out, err := e.handler.Handle(context.Background(), &runpod.Job{ID: "s", Input: []byte(`{"selftest": true}`)}, &recorder{})
	st, _ := out.(*SelfTest)
	if st == nil || st.RunnerRoot != e.root || st.Flavour != "gpu" {
		t.Fatalf("%v %+v", err, out)
	}
	// The fake host has a fit GPU (TestSelfTestReportsFitness has an
	// unfit one).
	if err != nil || !st.OK || !st.GPUVisible {
		t.Errorf("err = %v, %+v", err, st)
	}
	if n := len(e.gh.Requests()); n != 0 {
		t.Errorf("selftest called GitHub %d times", n)
	}
}

// A GitHub App installation instead of a PAT: the worker mints a
// short-lived token with the app's key and never needs a personal token.
func TestGitHubAppCredentials(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	e := newEnv(t, nil)
	e.gh.AppKey, e.gh.AppID = &key.PublicKey, "4242"
	in := map[string]any{"github_org": "my-org", "github_pat": "", "github_app_id": 4242, "github_app_installation_id": "77", "github_app_private_key": pemKey}
	res, err, rec := e.run(t, context.Background(), in)
	if err != nil || !res.JobRan {
		t.Fatalf("%v %+v\n%s", err, res, e.logs.String())
	}
	var sawApp bool
	for _, r := range e.gh.Requests() {
		if strings.HasSuffix(r.Path, "/app/installations/77/access_tokens") {
			sawApp = true
		}
		if strings.Contains(r.Path, "generate-jitconfig") && !strings.HasPrefix(r.Auth, "Bearer ghs_") {
			t.Errorf("registered with %q, not the installation token", r.Auth[:12])
		}
	}
	if !sawApp {
		t.Error("no installation token was minted")
	}
	e.assertClean(t, rec, "PRIVATE KEY", pemKey[40:80])

	// A wrong key is refused with a clear message.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	in["github_app_private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}))
	if _, err, _ := e.run(t, context.Background(), in); err == nil || !strings.Contains(err.Error(), "app id or private key was rejected") {
		t.Errorf("wrong key: %v", err)
	}
	// Incomplete credentials are an input error.
	if _, err, _ := e.run(t, context.Background(), map[string]any{"github_org": "o", "github_pat": "", "github_app_id": 1}); err == nil || !strings.Contains(err.Error(), "need all of") {
		t.Errorf("incomplete app credentials: %v", err)
	}
}

// A workflow step that leaves a daemon (in a session of its own) holding
// the runner's output must not keep the worker from finishing the job, and
// the daemon, a process of the runner account, is killed when the job ends.
func TestDaemonLeftByTheJob(t *testing.T) {
	pidFile := filepath.Join(os.TempDir(), fmt.Sprintf("wgr-daemon-%d.pids", time.Now().UnixNano()))
	if err := os.WriteFile(pidFile, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pidFile, 0o666)
	t.Cleanup(func() { os.Remove(pidFile) })
	e := newEnv(t, map[string]any{"daemon": true, "pid_file": pidFile})
	start := time.Now()
	res, err, rec := e.run(t, context.Background(), map[string]any{"github_org": "my-org"})
	if err != nil || !res.JobRan || res.JobResult != "Succeeded" {
		t.Fatalf("%v %+v\n%s", err, res, e.logs.String())
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the job took %v: the worker waited for the daemon", d)
	}
	if !strings.Contains(e.logs.String(), "still holds the runner's output") {
		t.Errorf("the daemon went unnoticed:\n%s", e.logs.String())
	}
	e.assertClean(t, rec)
	// The fake runner notes the daemon's pid, and its job step's.
	b, _ := os.ReadFile(pidFile)
	pids := strings.Fields(string(b))
	if len(pids) == 0 || len(pids) > 2 {
		t.Fatalf("daemon and step pids %q", pids)
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err == nil && !strings.Contains(string(status), "\nState:\tZ") {
			syscall.Kill(pid, syscall.SIGKILL)
			// A root job's processes are not the worker's to kill.
			if e.user != "root" {
				t.Errorf("a process (pid %d) of the runner account survived the job", pid)
			}
		}
	}
}
