package scaler

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// TestStandbyStartsNoRunner: a scaler refused the session (409) starts
// no runner, min_runners included: the one holding the session does.
func TestStandbyStartsNoRunner(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	cfg := testConfig(t, f, rp.URL, 1)
	cfg.ScaleSets[0].MinRunners, cfg.ScaleSets[0].HealthCapacity = 1, true
	a := start(t, cfg, testOptions("host-a"))
	waitFor(t, "a's session", 10*time.Second, func() bool { return len(f.Sessions()) == 1 }, a.logs)
	waitFor(t, "a's min runner", 10*time.Second, func() bool { return rp.live() == 1 }, a.logs)
	cfg2 := testConfig(t, f, rp.URL, 1)
	cfg2.ScaleSets[0].MinRunners, cfg2.ScaleSets[0].HealthCapacity = 1, true
	b := start(t, cfg2, testOptions("host-b"))
	waitFor(t, "b's conflict", 10*time.Second, func() bool { return strings.Contains(b.logs.String(), "session already exists") }, b.logs)
	time.Sleep(time.Second)
	if n := rp.live(); n > 1 || len(b.s.sets[0].snapshot()) != 0 {
		t.Fatalf("max_runners=1: %d live RunPod jobs, the standby started %d runners", n, len(b.s.sets[0].snapshot()))
	}
}

// TestStateFileLocked: a second scaler on the same state file fails at
// once, saying why.
func TestStateFileLocked(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	a, err := openState(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if b, err := openState(p); err == nil || !strings.Contains(err.Error(), "another scaler") {
		if b != nil {
			b.close()
		}
		t.Fatalf("second open of the state file: %v, want an error naming another scaler", err)
	}
	a.close()
	b, err := openState(p)
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	b.close()
}

// TestTakeoverQueuedRunners: a scaler taking over without the first's
// state while the first's runners still wait in RunPod's queue (idle,
// registered) counts them against max_runners.
func TestTakeoverQueuedRunners(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	a := start(t, testConfig(t, f, rp.URL, 2), testOptions("host-a"))
	f.QueueJob("runpod-gpu")
	f.QueueJob("runpod-gpu")
	waitFor(t, "two RunPod jobs", 10*time.Second, func() bool { return rp.live() == 2 }, a.logs)
	a.stop(t)
	b := start(t, testConfig(t, f, rp.URL, 2), testOptions("host-b"))
	waitFor(t, "b's session", 10*time.Second, func() bool { return f.Sessions()[f.ScaleSets()[0].ID] == "host-b" }, b.logs)
	time.Sleep(time.Second)
	if n := rp.live(); n > 2 {
		t.Fatalf("max_runners=2: %d live RunPod jobs, %d registered runners", n, len(f.Runners()))
	}
}

// TestUnwritableStateRefused: a scaler whose state file cannot be written
// does not start.
func TestUnwritableStateRefused(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	cfg := testConfig(t, f, rp.URL, 2)
	cfg.StateFile = filepath.Join(t.TempDir(), "no-such-dir", "state.json")
	log, _ := testLog(t)
	s, err := New(cfg, testSecrets(), log, testOptions("h"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Run(ctx); err == nil || !strings.Contains(err.Error(), "state file") {
		t.Fatalf("Run with an unwritable state file: %v", err)
	}
	if runs, _ := rp.stats(); runs != 0 {
		t.Fatalf("%d RunPod jobs submitted", runs)
	}
}

// TestSaveFailureStopsStarts: while the state file cannot be saved, no
// runner starts.
func TestSaveFailureStopsStarts(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	cfg := testConfig(t, f, rp.URL, 2)
	dir := filepath.Join(t.TempDir(), "st")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg.StateFile = filepath.Join(dir, "state.json")
	r := start(t, cfg, testOptions("host-a"))
	waitFor(t, "session", 10*time.Second, func() bool { return len(f.Sessions()) == 1 }, r.logs)
	os.RemoveAll(dir) // saving now fails
	f.QueueJob("runpod-gpu")
	waitFor(t, "the save failure logged", 10*time.Second, func() bool {
		return strings.Contains(r.logs.String(), "cannot save the state file")
	}, r.logs)
	time.Sleep(500 * time.Millisecond)
	if runs, _ := rp.stats(); runs != 0 {
		t.Fatalf("%d RunPod jobs submitted while the state file cannot be saved", runs)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a RunPod job once saving works", 10*time.Second, func() bool { return rp.live() == 1 }, r.logs)
}

// TestStateNull: a state file holding null is an empty state, not a
// panic on the first save.
func TestStateNull(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(p, []byte("null"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openState(p)
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	defer s.close()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("save panicked: %v", r)
		}
	}()
	if err := s.save("runpod-gpu", []runner{{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
}

// TestScaleDownCancelRetried: scaling down an idle runner whose RunPod
// cancel fails keeps trying until the job is cancelled.
func TestScaleDownCancelRetried(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	var fails atomic.Int32
	fails.Store(4)
	inner := rp.Server.Config.Handler
	rp.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/cancel/") && fails.Add(-1) >= 0 {
			w.WriteHeader(503)
			return
		}
		inner.ServeHTTP(w, r)
	})
	cfg := testConfig(t, f, rp.URL, 2)
	cfg.ScaleSets[0].IdleTimeout = time.Second
	r := start(t, cfg, testOptions("host-a"))
	req := f.QueueJob("runpod-gpu")
	waitFor(t, "a RunPod job", 10*time.Second, func() bool { return rp.live() == 1 }, r.logs)
	f.CancelJob(req)
	waitFor(t, "runner removed", 10*time.Second, func() bool { return len(f.Runners()) == 0 }, r.logs)
	waitFor(t, "the RunPod job cancelled", 10*time.Second, func() bool {
		rp.mu.Lock()
		defer rp.mu.Unlock()
		return rp.jobs["rp-1"].Status == jobapi.Cancelled
	}, r.logs)
	waitFor(t, "the runner forgotten", 10*time.Second, func() bool { return len(r.s.sets[0].snapshot()) == 0 }, r.logs)
}

// TestHealthzStatus: /healthz answers 503 while a scale set stands by,
// 200 once it holds its session.
func TestHealthzStatus(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	a := start(t, testConfig(t, f, rp.URL, 1), testOptions("host-a"))
	waitFor(t, "a's session", 10*time.Second, func() bool { return len(f.Sessions()) == 1 }, a.logs)
	b := start(t, testConfig(t, f, rp.URL, 1), testOptions("host-b"))
	waitFor(t, "b's conflict", 10*time.Second, func() bool { return strings.Contains(b.logs.String(), "session already exists") }, b.logs)
	if code := status(t, "http://"+b.addr+"/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz of the standby: %d, want 503", code)
	}
	if code := status(t, "http://"+a.addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz of the listening scaler: %d, want 200", code)
	}
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestConfigStateAndListen: state_file must be an absolute path (default
// DefaultStateFile); listen must be host:port, a non-loopback one warns.
func TestConfigStateAndListen(t *testing.T) {
	const sets = "\nscale_set \"a\" {\n endpoint = \"e1\"\n max_runners = 1\n}\n"
	cfg, err := ParseConfig("t.hcl", []byte(`github_url = "https://github.com/o"`+sets))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateFile != DefaultStateFile || !filepath.IsAbs(cfg.StateFile) {
		t.Fatalf("default state_file %q, want %q (absolute)", cfg.StateFile, DefaultStateFile)
	}
	for src, want := range map[string]string{
		`state_file = ""`:               "t.hcl:2:14: error: Invalid state_file",
		`state_file = "state.json"`:     "t.hcl:2:14: error: Invalid state_file",
		`listen = "not an address"`:     "t.hcl:2:10: error: Invalid listen",
		`listen = "127.0.0.1:notaport"`: "t.hcl:2:10: error: Invalid listen",
	} {
		_, err := ParseConfig("t.hcl", []byte("github_url = \"https://github.com/o\"\n"+src+sets))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
	cfg, err = ParseConfig("t.hcl", []byte("github_url = \"https://github.com/o\"\nlisten = \"0.0.0.0:9102\""+sets))
	if err != nil || len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "not loopback") {
		t.Fatalf("non-loopback listen: %v, warnings %q", err, cfg.Warnings)
	}
	cfg, err = ParseConfig("t.hcl", []byte("github_url = \"https://github.com/o\"\nlisten = \"127.0.0.1:9102\""+sets))
	if err != nil || len(cfg.Warnings) != 0 {
		t.Fatalf("loopback listen: %v, warnings %q", err, cfg.Warnings)
	}
}

// TestConfigLabels: a label naming another scale set, or given twice, is
// refused: a job would not know its scale set.
func TestConfigLabels(t *testing.T) {
	src := `github_url = "https://github.com/o"
scale_set "a" {
 endpoint = "e1"
 max_runners = 1
 labels = ["B"]
}
scale_set "b" {
 endpoint = "e2"
 max_runners = 1
 labels = ["x", "X"]
}`
	_, err := ParseConfig("t.hcl", []byte(src))
	for _, want := range []string{"t.hcl:5:11: error: Label of another scale set", "t.hcl:10:11: error: Duplicate label"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in: %v", want, err)
		}
	}
}

// TestRunnerGroupSpecialCharacters: a runner group whose name holds
// characters of a URL query (&, #, +, %, space) is looked up by its name.
func TestRunnerGroupSpecialCharacters(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	const group = "GPU pool&x#y+z%41"
	id := f.AddRunnerGroup(group)
	cfg := testConfig(t, f, rp.URL, 1)
	cfg.ScaleSets[0].RunnerGroup = group
	r := start(t, cfg, testOptions("h"))
	waitFor(t, "the session", 10*time.Second, func() bool { return len(f.Sessions()) == 1 }, r.logs)
	if ss := f.ScaleSets(); len(ss) != 1 || ss[0].RunnerGroupID != id {
		t.Fatalf("scale sets %+v: want one in group %q", ss, group)
	}
}

// TestCrashLoopBackoff: RunPod jobs failing at once, before their runner
// got a job (a broken image, not an unfit worker), are not started again
// and again: the scale set backs off, exponentially, and says so.
func TestCrashLoopBackoff(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			rp.mu.Lock()
			for _, j := range rp.jobs {
				if j.Status == jobapi.InQueue {
					j.Status = jobapi.Failed
				}
			}
			rp.mu.Unlock()
		}
	}()
	defer func() { close(stop); <-done }()
	cfg := testConfig(t, f, rp.URL, 3)
	cfg.CheckInterval = 200 * time.Millisecond
	opts := testOptions("host-a")
	opts.CrashBackoff = time.Second
	r := start(t, cfg, opts)
	for range 3 {
		f.QueueJob("runpod-gpu")
	}
	time.Sleep(5 * time.Second)
	runs, _ := rp.stats()
	// 3, then a hold of 1 s doubling per failed runner: 3 + a few.
	if runs > 9 {
		t.Fatalf("%d RunPod jobs submitted in 5 s while each failed at once", runs)
	}
	if !strings.Contains(r.logs.String(), "backing off") {
		t.Fatalf("no backoff logged:\n%s", r.logs)
	}
	if m := get(t, "http://"+r.addr+"/metrics"); !strings.Contains(m, `runpod_scaler_runner_failures_total{scale_set="runpod-gpu"}`) {
		t.Fatalf("no failure metric:\n%s", m)
	}
}

// TestStatus404Unconfirmed: RunPod answering 404 to /status and /health
// alike (the endpoint is gone or misconfigured, not the job) does not
// make the scaler forget a runner whose job may still run.
func TestStatus404Unconfirmed(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	var broken atomic.Bool
	inner := rp.Server.Config.Handler
	rp.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			http.NotFound(w, r)
			return
		}
		inner.ServeHTTP(w, r)
	})
	r := start(t, testConfig(t, f, rp.URL, 1), testOptions("host-a"))
	f.QueueJob("runpod-gpu")
	waitFor(t, "a RunPod job", 10*time.Second, func() bool { return rp.live() == 1 }, r.logs)
	broken.Store(true)
	time.Sleep(10 * testPeriod)
	rs := r.s.sets[0].snapshot()
	if len(rs) != 1 || rs[0].Ended || len(f.Runners()) != 1 {
		t.Fatalf("runners %+v, registered %d: a 404 from a broken endpoint ended the runner", rs, len(f.Runners()))
	}
	broken.Store(false)
}

// TestRunnerPrintsNoJIT: a runner printed with %v, %+v, %s or through
// slog does not show its JIT config.
func TestRunnerPrintsNoJIT(t *testing.T) {
	const jit = "eyJTECRETJITCONFIG"
	r := runner{Name: "r1", ID: 7, Job: "rp-1", jit: secret.New(jit)}
	log, buf := testLog(t)
	log.Info("x", "runner", r, "ptr", &r)
	for _, s := range []string{fmt.Sprintf("%v", r), fmt.Sprintf("%+v", r), fmt.Sprint(&r), fmt.Sprintf("%+v", []runner{r}), buf.String()} {
		if strings.Contains(s, jit) || !strings.Contains(s, "r1") {
			t.Fatalf("runner printed as %q", s)
		}
	}
}

// TestSlowScaleSetDoesNotBlockOthers: a slow generatejitconfig of one
// scale set does not hold up another scale set's job (each scale set has
// its own clients).
func TestSlowScaleSetDoesNotBlockOthers(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	inner := f.Server.Config.Handler
	f.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/generatejitconfig") && strings.Contains(r.URL.Path, "/101/") {
			select { // the first scale set's (id 101) mints are slow
			case <-time.After(6 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
	cfg := testConfig(t, f, rp.URL, 2)
	cfg.ScaleSets = append(cfg.ScaleSets, ScaleSetConfig{Name: "runpod-cpu", RunnerGroup: "default", Endpoint: "ep2", MaxRunners: 2,
		IdleTimeout: time.Minute, JobTimeout: 10 * time.Minute})
	r := start(t, cfg, testOptions("host-a"))
	waitFor(t, "sessions", 10*time.Second, func() bool { return len(f.Sessions()) == 2 }, r.logs)
	if ss := f.ScaleSets(); ss[0].ID != 101 || ss[0].Name != "runpod-gpu" {
		t.Fatalf("scale sets %+v", f.ScaleSets())
	}
	f.QueueJob("runpod-gpu")
	time.Sleep(500 * time.Millisecond) // the gpu set's actuator is now inside generatejitconfig
	t0 := time.Now()
	f.QueueJob("runpod-cpu")
	waitFor(t, "the cpu set's RunPod job", 10*time.Second, func() bool { runs, _ := rp.stats(); return runs >= 1 }, r.logs)
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("the cpu set's runner started %v after its job was queued: the gpu set's slow mint held it up", d.Round(time.Millisecond))
	}
}

// TestHugeErrorBodyCapped: an error whose body is megabytes (a proxy's
// page) is logged capped.
func TestHugeErrorBodyCapped(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	inner := f.Server.Config.Handler
	f.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/generatejitconfig") {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(strings.Repeat("x", 1<<20)))
			return
		}
		inner.ServeHTTP(w, r)
	})
	r := start(t, testConfig(t, f, rp.URL, 1), testOptions("host-a"))
	f.QueueJob("runpod-gpu")
	waitFor(t, "the mint failure logged", 10*time.Second, func() bool { return strings.Contains(r.logs.String(), "cannot start a runner") }, r.logs)
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if len(l) > 8<<10 {
			t.Fatalf("a log line of %d bytes: %.200s...", len(l), l)
		}
	}
}

// TestParsedConfigMinRunners: a configuration read by ParseConfig, with
// its defaults (health_capacity on) and min_runners 1, keeps exactly one
// warm runner, and a job on top of it gets its own.
func TestParsedConfigMinRunners(t *testing.T) {
	f := newScaleSetFake(t)
	rp := newFakeRunPod(t, 100*time.Millisecond)
	rp.noRun = true
	src := fmt.Sprintf("github_url = %q\nrunpod_api_url = %q\nstate_file = %q\ncheck_interval = \"100ms\"\n"+
		"scale_set \"runpod-gpu\" {\n endpoint = \"ep1\"\n min_runners = 1\n max_runners = 3\n}\n",
		f.ConfigURL("octo"), rp.URL+"/v2", filepath.Join(t.TempDir(), "state.json"))
	cfg, err := ParseConfig("t.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ScaleSets[0].HealthCapacity {
		t.Fatal("health_capacity is not on by default")
	}
	cfg.Listen = "127.0.0.1:0"
	r := start(t, cfg, testOptions("host-a"))
	waitFor(t, "the warm runner", 10*time.Second, func() bool { return rp.live() == 1 }, r.logs)
	time.Sleep(500 * time.Millisecond)
	if n := rp.live(); n != 1 {
		t.Fatalf("%d RunPod jobs with min_runners 1 and no job", n)
	}
	f.QueueJob("runpod-gpu")
	waitFor(t, "a runner for the job", 10*time.Second, func() bool { return rp.live() == 2 }, r.logs)
}

// TestForeignCount: runners GitHub counts beyond ours are foreign; one of
// ours removed just before (or after) the statistics were taken is not.
func TestForeignCount(t *testing.T) {
	now := time.Now()
	s := &set{regd: 3, busy: 1, statsAt: now, runners: []*runner{
		{Name: "a"}, // ours, registered
		{Name: "b", Gone: true, goneAt: now.Add(-time.Second)}, // removed as the statistics came: still in them
		{Name: "c", Gone: true},                                // removed long ago (or before a restart)
	}}
	if n := s.foreignLocked(); n != 1 {
		t.Fatalf("foreign %d, want 1 (3 registered, 2 of them ours)", n)
	}
	s.runners, s.dropped = s.runners[:1], []time.Time{now.Add(-time.Second)} // b dropped from the list
	if n := s.foreignLocked(); n != 1 {
		t.Fatalf("foreign %d, want 1 after b left the list", n)
	}
	s.busy = 3
	if n := s.foreignLocked(); n != 3 {
		t.Fatalf("foreign %d, want 3 (3 busy, none of them ours)", n)
	}
}
