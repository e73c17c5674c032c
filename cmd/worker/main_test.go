package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/jobhandler"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

var workerBin string

// The worker is tested as the process RunPod starts: built the way imagegen
// builds it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "worker-bin-")
	if err != nil {
		panic(err)
	}
	workerBin = filepath.Join(dir, "worker")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test-1", "-o", workerBin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build worker: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func workerCmd(t *testing.T, env map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(workerBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = t.TempDir()
	return cmd
}

func TestVersion(t *testing.T) {
	out, err := workerCmd(t, nil, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "worker test-1" {
		t.Fatalf("%q %v", out, err)
	}
}

func TestTestInput(t *testing.T) {
	out, err := workerCmd(t, nil, "--echo", "--test_input", `{"input":{"k":"v"}}`).Output()
	if err != nil || !strings.Contains(string(out), `"k": "v"`) {
		t.Fatalf("%s %v", out, err)
	}
	cmd := workerCmd(t, nil, "--echo", "--test_input", `{"input":{"fail":"nope"}}`)
	out, err = cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "nope") {
		t.Fatalf("failing job: %s %v", out, err)
	}
	// test_input.json in the working directory, as the SDK does.
	cmd = workerCmd(t, nil, "--echo")
	os.WriteFile(filepath.Join(cmd.Dir, "test_input.json"), []byte(`{"input":{"from":"file"}}`), 0o644)
	out, err = cmd.Output()
	if err != nil || !strings.Contains(string(out), `"from": "file"`) {
		t.Fatalf("test_input.json: %s %v", out, err)
	}
	// Nothing to do: a clear message and exit 1.
	cmd = workerCmd(t, nil, "--echo")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "not on RunPod") {
		t.Fatalf("no input: %v %s", err, stderr.String())
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestServeAPI(t *testing.T) {
	port := freePort(t)
	cmd := workerCmd(t, nil, "--echo", "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	url := fmt.Sprintf("http://127.0.0.1:%d/runsync", port)
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err = http.Post(url, "application/json", strings.NewReader(`{"input":{"x":1}}`)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	if body["status"] != "COMPLETED" || body["output"].(map[string]any)["x"] != 1.0 {
		t.Fatalf("runsync: %v", body)
	}
}

// platformRun starts the worker against a fake platform.
func platformRun(t *testing.T, p *runpodtest.Platform, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := workerCmd(t, p.Env("pod-7"), append([]string{"--echo"}, args...)...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	cmd.Stdout = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &logs
}

func waitExit(t *testing.T, cmd *exec.Cmd, timeout time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		cmd.Process.Kill()
		t.Fatalf("worker did not exit within %v", timeout)
		return -1
	}
}

func TestRefreshWorkerExitsAfterOneJob(t *testing.T) {
	p := runpodtest.New()
	defer p.Close()
	p.AddJob("j1", map[string]any{"hello": "world"})
	cmd, logs := platformRun(t, p)
	if code := waitExit(t, cmd, 20*time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, logs)
	}
	post, err := p.WaitFinal("j1", time.Second)
	if err != nil || post.Body["stopPod"] != true || post.Body["output"].(map[string]any)["hello"] != "world" {
		t.Fatalf("result %v %v", post.Body, err)
	}
	if strings.Contains(logs.String(), p.APIKey) {
		t.Errorf("API key in logs:\n%s", logs)
	}
}

func TestSIGTERMWhileAJobRuns(t *testing.T) {
	p := runpodtest.New()
	defer p.Close()
	p.AddJob("long", map[string]any{"sleep": 60})
	cmd, logs := platformRun(t, p)
	// Wait until the job runs (its progress post arrives).
	deadline := time.Now().Add(15 * time.Second)
	for len(p.Done()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("job never started\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if code := waitExit(t, cmd, 15*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, logs)
	}
	post, err := p.WaitFinal("long", time.Second)
	if err != nil {
		t.Fatalf("no result posted after SIGTERM: %v\n%s", err, logs)
	}
	if e, _ := post.Body["error"].(string); !strings.Contains(e, "cancelled") {
		t.Errorf("result %v", post.Body)
	}
	if strings.Contains(logs.String(), p.APIKey) {
		t.Errorf("API key in logs:\n%s", logs)
	}
}

func TestJSONLogsOnPlatform(t *testing.T) {
	p := runpodtest.New()
	defer p.Close()
	p.AddJob("j", 1)
	env := p.Env("pod-8")
	env["RUNPOD_ENDPOINT_ID"] = "ep"
	cmd := workerCmd(t, env, "--echo")
	out, _ := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
	}
	if !strings.Contains(string(out), `"request_id":"j"`) {
		t.Errorf("no request id in logs:\n%s", out)
	}
}

// The worker binary stays small and never links the build tooling.
func TestBinarySize(t *testing.T) {
	st, err := os.Stat(workerBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worker binary: %.1f MB", float64(st.Size())/1e6)
	if st.Size() > 15<<20 {
		t.Errorf("worker binary is %d bytes, over 15 MiB", st.Size())
	}
}

func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"github.com/moby/buildkit", "github.com/GoogleContainerTools/kaniko", "github.com/chainguard-dev/kaniko",
		"github.com/hashicorp/hcl", "github.com/google/go-containerregistry", "github.com/docker/", "github.com/spf13/cobra",
		"github.com/runpod-workers/worker-github_runner/internal/build", "github.com/runpod-workers/worker-github_runner/internal/variants"} {
		for _, dep := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("the worker links %s", dep)
			}
		}
	}
}

// TestStartToFirstTake measures process start to the first job-take request.
func TestStartToFirstTake(t *testing.T) {
	var ds []time.Duration
	for i := 0; i < 5; i++ {
		ds = append(ds, startToFirstTake(t))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	t.Logf("process start to first job take: median %v (min %v, max %v, 5 runs)", ds[2], ds[0], ds[4])
	if ds[2] > 2*time.Second {
		t.Errorf("median start to first take %v", ds[2])
	}
}

func startToFirstTake(t testing.TB) time.Duration {
	p := runpodtest.New()
	defer p.Close()
	cmd := exec.Command(workerBin, "--echo")
	for k, v := range p.Env("pod-b") {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if takes, _ := p.Takes(); len(takes) > 0 {
			return takes[0].Sub(start)
		}
	}
	t.Fatal("no take within 10s")
	return 0
}

func BenchmarkStartToFirstTake(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += startToFirstTake(b)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/start")
}

// A worker with the endpoint's credential removes the offline runners
// killed workers left (older than RUNNER_SWEEP_AFTER), once its first
// job's registration is over: never while it registers, and never before
// a job came (an idle worker costs GitHub nothing).
func TestSweepAfterFirstRegistration(t *testing.T) {
	p := runpodtest.New()
	defer p.Close()
	const pat = "ghp_SWEEPTEST000000000000000000000000000000"
	gh := githubtest.New(pat)
	defer gh.Close()
	left := gh.AddRunner("my-org", jobhandler.RunnerName("pod-dead", "job-1", time.Now().Add(-3*time.Hour)), "self-hosted", "runpod", jobhandler.OwnLabel)
	young := gh.AddRunner("my-org", jobhandler.RunnerName("pod-new", "job-2", time.Now().Add(-time.Minute)), "self-hosted", "runpod", jobhandler.OwnLabel)
	env := p.Env("pod-9")
	for k, v := range map[string]string{"GITHUB_PAT": pat, "GITHUB_ORG": "my-org", "GITHUB_API_URL": gh.URL, "WGR_TEST_ALLOW_HTTP_LOOPBACK": "1"} {
		env[k] = v
	}
	cmd := workerCmd(t, env)
	var logs runpodtest.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(gh.Requests()); n != 0 {
		t.Errorf("%d GitHub requests before any job came", n)
	}
	p.AddJob("j1", map[string]any{"github_org": "other-org"}) // fails before registering
	if code := waitExit(t, cmd, 15*time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, logs.String())
	}
	if rs := gh.Runners(); len(rs) != 1 || rs[0].ID != young {
		t.Errorf("runners %+v: want only %d (%d was left by a dead worker)\n%s", rs, young, left, logs.String())
	}
	if strings.Contains(logs.String(), pat) {
		t.Error("the PAT is in the logs")
	}
}

// The test-only plain-http switch is loud: a worker started with it warns.
func TestLoopbackHTTPWarns(t *testing.T) {
	cmd := workerCmd(t, map[string]string{"WGR_TEST_ALLOW_HTTP_LOOPBACK": "1"}, "--echo", "--test_input", `{"input":{"k":"v"}}`)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "WGR_TEST_ALLOW_HTTP_LOOPBACK") || !strings.Contains(stderr.String(), "never") {
		t.Errorf("no warning:\n%s", stderr.String())
	}
	cmd = workerCmd(t, nil, "--echo", "--test_input", `{"input":{"k":"v"}}`)
	stderr.Reset()
	cmd.Stderr = &stderr
	cmd.Run()
	if strings.Contains(stderr.String(), "WGR_TEST_ALLOW_HTTP_LOOPBACK") {
		t.Errorf("a warning without the setting:\n%s", stderr.String())
	}
}

func TestHandlerGetsTheGrace(t *testing.T) {
	h, ok := newHandler(false, "p", 7*time.Second, slog.Default()).(*jobhandler.Handler)
	if !ok || h.Grace != 7*time.Second {
		t.Errorf("%T %+v", h, h)
	}
}

// sigtermDuringJob starts the worker on a fake platform with a job that
// sleeps 2 s, sends SIGTERM once it runs, and returns the job's error
// ("" when it finished).
func sigtermDuringJob(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	p := runpodtest.New()
	defer p.Close()
	p.AddJob("j", map[string]any{"sleep": 2})
	penv := p.Env("pod-9")
	for k, v := range env {
		penv[k] = v
	}
	cmd := workerCmd(t, penv, append([]string{"--echo"}, args...)...)
	var logs runpodtest.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(p.Done()) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("job never started\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if code := waitExit(t, cmd, 20*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, logs.String())
	}
	post, err := p.WaitFinal("j", time.Second)
	if err != nil {
		t.Fatalf("no result: %v\n%s", err, logs.String())
	}
	e, _ := post.Body["error"].(string)
	return e
}

// --shutdown-finish lets a running job finish after SIGTERM, as
// WORKER_SHUTDOWN_FINISH does, and wins over it.
func TestShutdownFinishFlag(t *testing.T) {
	if e := sigtermDuringJob(t, nil, "--shutdown-finish", "30s"); e != "" {
		t.Errorf("--shutdown-finish 30s: the job did not finish: %s", e)
	}
	if e := sigtermDuringJob(t, map[string]string{"WORKER_SHUTDOWN_FINISH": "30s"}, "--shutdown-finish=0"); !strings.Contains(e, "cancelled") {
		t.Errorf("--shutdown-finish=0 over WORKER_SHUTDOWN_FINISH=30s: the job was not cancelled: %q", e)
	}
	// The flag set, a malformed variable is not an error.
	if e := sigtermDuringJob(t, map[string]string{"WORKER_SHUTDOWN_FINISH": "soon"}, "--shutdown-finish", "30s"); e != "" {
		t.Errorf("--shutdown-finish 30s with WORKER_SHUTDOWN_FINISH=soon: %s", e)
	}
	out, err := workerCmd(t, nil, "--shutdown-finish", "-5s", "--version").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--shutdown-finish") {
		t.Errorf("--shutdown-finish -5s: %v %s", err, out)
	}
	help, _ := workerCmd(t, nil, "--help").CombinedOutput()
	if !strings.Contains(string(help), "-shutdown-finish") || !strings.Contains(string(help), "WORKER_SHUTDOWN_FINISH") {
		t.Errorf("--help does not document --shutdown-finish:\n%s", help)
	}
}

// A host unfit at start (here: less free disk than the endpoint asks for)
// takes no job and exits 1, so RunPod replaces the worker.
func TestUnfitHostExitsBeforeTakingAJob(t *testing.T) {
	p := runpodtest.New()
	defer p.Close()
	p.AddJob("never", map[string]any{"github_org": "my-org"})
	penv := p.Env("pod-unfit")
	penv["WORKER_FLAVOUR"] = "cpu"
	penv["FITNESS_MIN_DISK_MB"] = "1099511627776"
	penv["RUNNER_ROOT"] = t.TempDir()
	cmd := workerCmd(t, penv)
	var logs runpodtest.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, 20*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, logs.String())
	}
	if takes, _ := p.Takes(); len(takes) != 0 {
		t.Errorf("%d takes by an unfit worker", len(takes))
	}
	if !strings.Contains(logs.String(), "MiB free in") || !strings.Contains(logs.String(), "start-up check failed") {
		t.Errorf("the log does not say why:\n%s", logs.String())
	}
}

// RUNNER_SUDO with --refresh_worker=false is refused at start: the next
// job would share the container with what a sudo job left running.
func TestSudoNeedsRefresh(t *testing.T) {
	p := runpodtest.New()
	defer p.Close()
	penv := p.Env("pod-sudo")
	penv["RUNNER_SUDO"] = "1"
	cmd := workerCmd(t, penv, "--refresh_worker=false")
	var logs runpodtest.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, 20*time.Second); code != 1 || !strings.Contains(logs.String(), "RUNNER_SUDO needs --refresh_worker") {
		t.Fatalf("exit %d\n%s", code, logs.String())
	}
	if takes, _ := p.Takes(); len(takes) != 0 {
		t.Errorf("%d takes", len(takes))
	}
}
