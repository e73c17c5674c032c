package scaler

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	"github.com/runpod-workers/worker-github_runner/internal/scalesettest"
)

// The end-to-end tests run the real binaries: the scaler, the worker
// (as RunPod starts it, one job per process) and the fake runner as the
// worker's Runner.Listener, against the scale-set fake and RunPod's fake
// platform with its endpoint API.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "scaler-e2e-bin-")
		if binErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		for _, b := range []struct{ out, pkg string }{
			{"worker", "../../cmd/worker"}, {"scaler", "../../cmd/scaler"}, {"Runner.Listener", "../listener/fakerunner"},
		} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, b.out), b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// pool keeps n worker processes taking jobs from the endpoint, each a
// fresh "container" (runner folder) that exits after one job, as RunPod
// replaces a refreshed worker.
type pool struct {
	t      *testing.T
	ep     *runpodtest.Endpoint
	bin    string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	logs   runpodtest.LogBuffer

	// jobSeconds is how long each fake runner's job takes.
	jobSeconds float64
	// env is added to every worker's environment; breaks, when set, is
	// called with each worker's runner folder and output once the worker
	// started (the test's own faults).
	env    map[string]string
	breaks func(n int, root string, out *runpodtest.LogBuffer)

	mu      sync.Mutex
	n       int
	running map[string]*worker // pod id -> its worker process
}

// worker is one worker process.
type worker struct {
	cmd *exec.Cmd
	out *runpodtest.LogBuffer
}

func startPool(t *testing.T, ep *runpodtest.Endpoint, n int, jobSeconds float64) *pool {
	return startPoolWith(t, ep, n, jobSeconds, nil, nil)
}

func startPoolWith(t *testing.T, ep *runpodtest.Endpoint, n int, jobSeconds float64, env map[string]string,
	breaks func(int, string, *runpodtest.LogBuffer)) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{t: t, ep: ep, bin: binaries(t), ctx: ctx, cancel: cancel, jobSeconds: jobSeconds, running: map[string]*worker{},
		env: env, breaks: breaks}
	for i := range n {
		p.wg.Go(func() { p.slot(i) })
	}
	t.Cleanup(p.stop)
	return p
}

// stop ends the workers: SIGTERM, as RunPod stops a worker.
func (p *pool) stop() {
	p.cancel()
	p.wg.Wait()
}

func (p *pool) slot(i int) {
	for p.ctx.Err() == nil {
		p.mu.Lock()
		p.n++
		pod, n := fmt.Sprintf("pod-%d-%d", i, p.n), p.n
		p.mu.Unlock()
		if err := p.runWorker(pod, n); err != nil && p.ctx.Err() == nil {
			fmt.Fprintf(&p.logs, "worker %s: %v\n", pod, err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// runWorker runs one worker process in a fresh runner folder.
func (p *pool) runWorker(pod string, n int) error {
	root, err := os.MkdirTemp("", "scaler-e2e-runner-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	b, _ := os.ReadFile(filepath.Join(p.bin, "Runner.Listener"))
	os.WriteFile(filepath.Join(root, "bin", "Runner.Listener"), b, 0o755)
	os.WriteFile(filepath.Join(root, "fake-behaviour.json"), []byte(fmt.Sprintf(`{"job_seconds": %g}`, p.jobSeconds)), 0o644)
	cmd := exec.CommandContext(p.ctx, filepath.Join(p.bin, "worker"))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second // then SIGKILL
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RUNNER_ROOT=" + root, "RUNNER_ALLOW_ROOT=1"}
	for k, v := range p.ep.Env(pod) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range p.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = root
	out := &runpodtest.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	p.mu.Lock()
	p.running[pod] = &worker{cmd, out}
	p.mu.Unlock()
	if p.breaks != nil {
		p.breaks(n, root, out)
	}
	err = cmd.Wait()
	p.mu.Lock()
	delete(p.running, pod)
	p.mu.Unlock()
	fmt.Fprintf(&p.logs, "--- worker %s (%v):\n%s", pod, err, out.String())
	return nil
}

var runnerIDRE = regexp.MustCompile(`runner from a JIT config.* runner_id=(\d+)`)

// killBusy SIGKILLs a worker whose runner runs a job, as a RunPod worker
// dies with its container (the runner dies with it: Pdeathsig), and
// returns that runner's GitHub id.
func (p *pool) killBusy() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.running {
		out := w.out.String()
		m := runnerIDRE.FindStringSubmatch(out)
		if m == nil || !strings.Contains(out, "Running job") {
			continue
		}
		w.cmd.Process.Kill()
		id, _ := strconv.Atoi(m[1])
		return id, true
	}
	return 0, false
}

// scalerProc is the scaler binary.
type scalerProc struct {
	cmd  *exec.Cmd
	logs *runpodtest.LogBuffer
	done chan struct{}
}

func writeScalerConfig(t *testing.T, f *scalesettest.Fake, ep *runpodtest.Endpoint, max int) string {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`github_url     = %q
runpod_api_url = %q
state_file     = %q
check_interval = "200ms"
session_retry  = "300ms"
finish_grace   = "5s"

scale_set "runpod-gpu" {
  endpoint     = %q
  max_runners  = %d
  idle_timeout = "60s"
  job_timeout  = "5m"
  runner_user  = "root"
}
`, f.ConfigURL("octo"), ep.URL(), filepath.Join(dir, "state.json"), ep.ID(), max)
	path := filepath.Join(dir, "scaler.hcl")
	os.WriteFile(path, []byte(cfg), 0o644)
	return path
}

func startScalerProc(t *testing.T, config string) *scalerProc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), "scaler"), "--config", config)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GITHUB_PAT=" + testPAT, "RUNPOD_API_KEY=" + testRPKey}
	s := &scalerProc{cmd: cmd, logs: &runpodtest.LogBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.signal(t, syscall.SIGKILL) })
	return s
}

func (s *scalerProc) signal(t *testing.T, sig syscall.Signal) {
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Errorf("scaler did not exit on %v", sig)
		s.cmd.Process.Kill()
	}
}

type e2eEnv struct {
	f    *scalesettest.Fake
	p    *runpodtest.Platform
	ep   *runpodtest.Endpoint
	pool *pool
}

func newE2E(t *testing.T, workers int) *e2eEnv {
	if testing.Short() {
		t.Skip("end to end: builds and runs the worker, the scaler and the fake runner")
	}
	binaries(t)
	f := newScaleSetFake(t)
	f.SessionTimeout = 2 * time.Second
	p := runpodtest.New()
	t.Cleanup(p.Close)
	ep := p.Endpoint("ep-gpu", testRPKey)
	e := &e2eEnv{f: f, p: p, ep: ep}
	if workers > 0 {
		e.pool = startPool(t, ep, workers, 0.5)
	}
	return e
}

// clean waits until every job ran exactly once and nothing is left: no
// runner registered, no RunPod job queued or running.
func (e *e2eEnv) clean(t *testing.T, jobs int, logs ...*runpodtest.LogBuffer) {
	t.Helper()
	e.cleanFailed(t, jobs, 0, logs...)
}

// cleanFailed is clean with failed jobs expected to have failed (their
// runner died).
func (e *e2eEnv) cleanFailed(t *testing.T, jobs, failed int, logs ...*runpodtest.LogBuffer) {
	t.Helper()
	dump := func() string {
		var b strings.Builder
		for _, l := range logs {
			b.WriteString(l.String())
		}
		if e.pool != nil {
			b.WriteString(e.pool.logs.String())
		}
		js, _ := json.MarshalIndent(e.ep.Jobs(), "", " ")
		return fmt.Sprintf("RunPod jobs: %s\nfake jobs: %+v\nrunners: %+v\n%s", js, e.f.Jobs(), e.f.Runners(), b.String())
	}
	end := time.Now().Add(60 * time.Second)
	for !allDone(e.f, jobs)() || len(e.f.Runners()) != 0 || e.ep.Live() != 0 {
		if time.Now().After(end) {
			t.Fatalf("not done and clean in time:\n%s", dump())
		}
		time.Sleep(50 * time.Millisecond)
	}
	nFailed := 0
	for _, j := range e.f.Jobs() {
		if j.Result == "failed" {
			nFailed++
		}
		if j.Runs != 1 || j.Result != "succeeded" && j.Result != "failed" {
			t.Fatalf("job %d ran %d times (%s):\n%s", j.RequestID, j.Runs, j.Result, dump())
		}
	}
	if nFailed != failed {
		t.Fatalf("%d jobs failed, want %d:\n%s", nFailed, failed, dump())
	}
	for _, l := range logs {
		for _, sec := range append(e.f.Issued(), testPAT, testRPKey) {
			if strings.Contains(l.String(), sec) {
				t.Fatalf("a secret (%.12s...) is in the scaler's logs", sec)
			}
		}
	}
}

// TestE2EFiveJobsMaxThree is the acceptance run: five jobs, max_runners
// 3, real worker binaries and fake runners.
func TestE2EFiveJobsMaxThree(t *testing.T) {
	e := newE2E(t, 5)
	s := startScalerProc(t, writeScalerConfig(t, e.f, e.ep, 3))
	for range 5 {
		e.f.QueueJob("runpod-gpu")
	}
	e.clean(t, 5, s.logs)
	if n, max := len(e.ep.Jobs()), e.ep.MaxLive(); n != 5 || max > 3 {
		t.Fatalf("%d RunPod jobs, at most %d at once; want 5, at most 3", n, max)
	}
	for _, j := range e.ep.Jobs() {
		if j.Status != jobapi.Completed {
			t.Errorf("RunPod job %s: %s %s", j.ID, j.Status, j.Error)
		}
	}
	s.signal(t, syscall.SIGTERM)
	if os.Getenv("E2E_DUMP") != "" {
		t.Log(s.logs.String(), e.pool.logs.String())
	}
	if len(e.f.Sessions()) != 0 {
		t.Fatalf("SIGTERM left the session open:\n%s", s.logs)
	}
}

// TestE2EFaults: /run answering 500 (lost, then a 429) and GitHub 5xx
// and rate limits, then the scaler killed mid-flight and a second scaler
// standing by that takes over.
func TestE2EFaults(t *testing.T) {
	e := newE2E(t, 4)
	e.ep.Fail(runpodtest.OpRun, 500, 429)
	e.f.Fail(scalesettest.OpGenerateJIT, 503)
	e.f.Fail(scalesettest.OpGetMessage, 500, 429)
	config := writeScalerConfig(t, e.f, e.ep, 2)
	a := startScalerProc(t, config)
	for range 4 {
		e.f.QueueJob("runpod-gpu")
	}
	// Kill the scaler once two runners run jobs.
	end := time.Now().Add(60 * time.Second)
	for busy := 0; busy < 2; {
		if time.Now().After(end) {
			t.Fatalf("no two busy runners:\n%s%s", a.logs, e.pool.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
		busy = 0
		for _, r := range e.f.Runners() {
			if r.Job != 0 {
				busy++
			}
		}
	}
	a.signal(t, syscall.SIGKILL)
	b := startScalerProc(t, config)
	c := startScalerProc(t, writeScalerConfig(t, e.f, e.ep, 2)) // another host: its own state
	e.clean(t, 4, b.logs, c.logs)
	if max := e.ep.MaxLive(); max > 2 {
		t.Fatalf("%d RunPod jobs at once, max_runners is 2", max)
	}
	if !strings.Contains(b.logs.String()+c.logs.String(), "session already exists") {
		t.Fatalf("no scaler said the session exists:\n%s\n%s", b.logs, c.logs)
	}
}

// TestE2EWorkerKilled: a worker dies mid-job (its container is gone).
// GitHub fails the job once the runner stops answering; the scaler
// cancels the RunPod job the dead worker left IN_PROGRESS, and nothing is
// left behind.
func TestE2EWorkerKilled(t *testing.T) {
	e := newE2E(t, 0)
	e.pool = startPool(t, e.ep, 3, 3)
	s := startScalerProc(t, writeScalerConfig(t, e.f, e.ep, 2))
	e.f.QueueJob("runpod-gpu")
	e.f.QueueJob("runpod-gpu")
	var id int
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ok bool
		if id, ok = e.pool.killBusy(); ok {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("no busy worker:\n%s%s", s.logs, e.pool.logs.String())
		}
	}
	time.Sleep(500 * time.Millisecond)
	e.f.LoseRunner(id) // GitHub gives up on the runner
	e.f.QueueJob("runpod-gpu")
	e.cleanFailed(t, 3, 1, s.logs)
	cancelled := 0
	for _, j := range e.ep.Jobs() {
		if j.Status == jobapi.Cancelled {
			cancelled++
		}
	}
	if cancelled != 1 || !strings.Contains(s.logs.String(), "cancelling it") {
		t.Fatalf("%d RunPod jobs cancelled, want the dead worker's:\n%s", cancelled, s.logs)
	}
}

// TestE2EReoffer: GitHub re-offers a job no runner picked up in time
// (canceled, then assigned again); the runner already started for it
// takes it once a worker is free, and no second runner is started.
func TestE2EReoffer(t *testing.T) {
	e := newE2E(t, 0) // no worker yet: the RunPod job waits in the queue
	s := startScalerProc(t, writeScalerConfig(t, e.f, e.ep, 3))
	req := e.f.QueueJob("runpod-gpu")
	waitFor(t, "a queued RunPod job", 20*time.Second, func() bool { return e.ep.Live() == 1 }, s.logs)
	if err := e.f.Reoffer(req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job assigned again", 10*time.Second, func() bool {
		j := e.f.Jobs()[0]
		return j.Offers == 2 && j.State == scalesettest.JobAssigned
	}, s.logs)
	time.Sleep(time.Second) // a few checks: nothing new may start
	e.pool = startPool(t, e.ep, 2, 0.5)
	e.clean(t, 1, s.logs)
	if n := len(e.ep.Jobs()); n != 1 {
		t.Fatalf("%d RunPod jobs for one re-offered job, want 1", n)
	}
}

// TestE2EUnfitWorker: the first worker is fit at its start but not when
// the job comes (its work folder now lies on a file system with less free
// disk than FITNESS_MIN_DISK_MB): it fails the runner's RunPod job as
// unfit, leaves the runner registered and exits. The scaler submits the
// same JIT config again; the next worker runs the job with that runner.
func TestE2EUnfitWorker(t *testing.T) {
	e := newE2E(t, 0)
	small, minMiB := unfitDisk(t)
	flaky := make(chan error, 1)
	e.pool = startPoolWith(t, e.ep, 1, 0.5, map[string]string{"FITNESS_MIN_DISK_MB": strconv.FormatInt(minMiB, 10)},
		func(n int, root string, out *runpodtest.LogBuffer) {
			if n != 1 {
				return
			}
			for end := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "host fit"); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(end) {
					flaky <- fmt.Errorf("the worker did not pass its start-up check:\n%s", out)
					return
				}
			}
			flaky <- os.Symlink(small, filepath.Join(root, "_work"))
		})
	if err := <-flaky; err != nil {
		t.Fatal(err)
	}
	s := startScalerProc(t, writeScalerConfig(t, e.f, e.ep, 2))
	e.f.QueueJob("runpod-gpu")
	e.clean(t, 1, s.logs)
	jobs := e.ep.Jobs()
	if len(jobs) != 2 || jobs[0].Status != jobapi.Failed || jobs[1].Status != jobapi.Completed || string(jobs[0].Input) != string(jobs[1].Input) {
		t.Fatalf("RunPod jobs %+v, want the first FAILED and the same input COMPLETED\n%s%s", jobs, s.logs, e.pool.logs.String())
	}
	if rep, ok := jobapi.ParseErrorReport(jobs[0].Error); !ok || !strings.Contains(strings.Join(rep.Problems(), ";"), "MiB free in") {
		t.Fatalf("the first job's error is not the worker's unfit report: %s", jobs[0].Error)
	}
	if n := e.f.Count(scalesettest.OpGenerateJIT); n != 1 {
		t.Fatalf("%d runners minted, want 1", n)
	}
	if !strings.Contains(s.logs.String(), "unfit retry 1 of 2") {
		t.Fatalf("the scaler does not log the unfit retry:\n%s", s.logs)
	}
}

// unfitDisk is a folder on a file system with less free space than the
// temporary folder's (where the workers' runner folders are), and a
// FITNESS_MIN_DISK_MB between the two.
func unfitDisk(t *testing.T) (string, int64) {
	t.Helper()
	free := func(dir string) int64 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			return -1
		}
		return int64(st.Bavail) * int64(st.Bsize) >> 20
	}
	big := free(os.TempDir())
	for _, dir := range []string{"/dev/shm", "/run/user", "/run"} {
		small := free(dir)
		if small < 0 || big-small < 4096 {
			continue
		}
		d, err := os.MkdirTemp(dir, "scaler-e2e-unfit-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		return d, small + (big-small)/2
	}
	t.Skipf("needs a file system with at least 4 GiB less free space than %s (%d MiB free), such as /dev/shm", os.TempDir(), big)
	return "", 0
}
