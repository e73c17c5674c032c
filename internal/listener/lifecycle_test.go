package listener_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/listener"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	return err == nil && !strings.Contains(string(b), "\nState:\tZ")
}

// pids reads the pids the fake listener recorded.
func pids(t *testing.T, file string) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the fake listener recorded no pid: %v", err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// logBuffer is a log that tests read while the runner writes it.
type logBuffer struct{ lines }

func (b *logBuffer) Write(p []byte) (int, error) { b.add(string(p)); return len(p), nil }

func (b *logBuffer) String() string { return strings.Join(b.all(), "") }

// A process the job started in a session of its own (out of the
// listener's process group) as the runner account is killed when the run
// ends: it could read the next job's JIT config from the next listener's
// environment. Root's processes are left alone.
func TestLeftoversOfTheAccountAreKilled(t *testing.T) {
	u := runnerUser(t)
	root := ownedRoot(t, u, nil)
	pidFile := filepath.Join(filepath.Dir(root), "pids")
	writeBehaviour(t, root, map[string]any{"job_seconds": 0, "escape": true, "pid_file": pidFile})
	os.WriteFile(pidFile, nil, 0o666)
	os.Chmod(pidFile, 0o666)
	rootSleep := exec.Command("sleep", "300")
	rootSleep.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := rootSleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer rootSleep.Wait()
	defer rootSleep.Process.Kill()
	var out lines
	var log logBuffer
	cfg := config(root, &secret.Redactor{}, &out)
	cfg.User = u.Username
	cfg.Log = slog.New(slog.NewTextHandler(&log, nil))
	res, err := run(t, context.Background(), cfg)
	if err != nil || res.JobResult != "Succeeded" {
		t.Fatalf("result %+v, error %v\n%s", res, err, strings.Join(out.all(), "\n"))
	}
	for _, pid := range pids(t, pidFile) {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("sleep 300 (pid %d), started by the job in a session of its own, survived the run", pid)
		}
	}
	if !strings.Contains(log.String(), "killed the runner account's leftover processes") {
		t.Errorf("the kill was not logged:\n%s", log.String())
	}
	if !alive(rootSleep.Process.Pid) {
		t.Error("a root process was killed")
	}
}

// The worker's job hook runs as a job step, as the runner account: a job
// that cleans the temporary folder (here it tries to remove the hook's
// folder) must not make a hook fail, which would fail the job.
func TestJobCannotBreakTheHooks(t *testing.T) {
	u := runnerUser(t)
	root := ownedRoot(t, u, map[string]any{"job_seconds": 0,
		"step_script": `rm -rf "$(dirname "$ACTIONS_RUNNER_HOOK_JOB_STARTED")"`})
	var out lines
	cfg := config(root, &secret.Redactor{}, &out)
	cfg.User = u.Username
	res, err := run(t, context.Background(), cfg)
	if err != nil || res.JobResult != "Succeeded" {
		t.Errorf("result %q, error %v: the job broke the worker's hooks\n%s", res.JobResult, err, strings.Join(out.all(), "\n"))
	}
}

// After a self-update exit the listener is restarted only once the
// detached updater has swapped bin/ and written update.finished (which is
// then removed); the updater, in the listener's process group, is not
// killed. It holds the listener's output, as _update.sh does, which hides
// an update shorter than the 5 s the session waits for the output.
func TestSelfUpdateWaitsForTheUpdater(t *testing.T) {
	root := fakeRoot(t, map[string]any{"update_exits": 1, "update_code": 3, "update_seconds": 6, "job_seconds": 0})
	var out lines
	start := time.Now()
	res, err := run(t, context.Background(), config(root, &secret.Redactor{}, &out))
	if err != nil || res.Restarts != 1 || res.JobResult != "Succeeded" {
		t.Fatalf("restarts %d, result %q, error %v\n%s", res.Restarts, res.JobResult, err, strings.Join(out.all(), "\n"))
	}
	if _, err := os.Stat(filepath.Join(root, "bin", ".fake-swapped")); err != nil {
		t.Errorf("the updater did not swap bin/: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "update.finished")); err == nil {
		t.Error("update.finished left behind")
	}
	if took := time.Since(start); took < 6*time.Second {
		t.Errorf("took %v: the update takes 6 s", took)
	}
}

// A retryable failure (exit 2) is retried after RetryBackoff, as run.sh
// waits 5 s; a cancel cuts the wait short.
func TestRetryableExitBacksOff(t *testing.T) {
	root := fakeRoot(t, map[string]any{"mode": "exit", "exit": 2})
	var out lines
	cfg := config(root, &secret.Redactor{}, &out)
	cfg.MaxRestarts, cfg.RetryBackoff = 2, 700*time.Millisecond
	start := time.Now()
	res, _ := run(t, context.Background(), cfg)
	if took := time.Since(start); res.Restarts != 2 || took < 1400*time.Millisecond {
		t.Errorf("%d restarts in %v, want 2 restarts 700 ms apart", res.Restarts, took)
	}

	cfg.MaxRestarts, cfg.RetryBackoff = 2, time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(time.Second, cancel)
	start = time.Now()
	res, err := run(t, ctx, cfg)
	if took := time.Since(start); took > 5*time.Second || !res.Cancelled || err != nil {
		t.Errorf("cancelled during the backoff: returned after %v, cancelled %v, error %v", took, res.Cancelled, err)
	}
}

// staleConfig leaves what a previous job's runner left in root: its
// configuration files, and a root-owned _work, as a root job leaves them.
func staleConfig(t *testing.T, root string) {
	t.Helper()
	for _, f := range []string{".runner", ".runner_migrated", ".credentials", ".credentials_migrated", ".credentials_rsaparams"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(`{"agentId": 99}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(root, f), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(root, "_work", "repo")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(root, "_work"), work} {
		if err := os.Chown(p, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// A reused container: the previous job's configuration is removed before
// the next job (token mode: configure refuses while .runner exists), and
// files a root job left are given back to the runner account, which must
// write the JIT config's files and in _work.
func TestStaleConfigurationIsRemoved(t *testing.T) {
	u := runnerUser(t)
	uid, _ := strconv.Atoi(u.Uid)
	t.Run("jit", func(t *testing.T) {
		root := ownedRoot(t, u, map[string]any{"job_seconds": 0})
		os.Remove(filepath.Join(root, ".runner"))
		staleConfig(t, root)
		var out lines
		cfg := config(root, &secret.Redactor{}, &out)
		cfg.User, cfg.JIT = u.Username, secret.New(jitConfig(t))
		res, err := run(t, context.Background(), cfg)
		if err != nil || res.JobResult != "Succeeded" {
			t.Fatalf("result %q, error %v\n%s", res.JobResult, err, strings.Join(out.all(), "\n"))
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(root, "_work", "repo"), &st); err != nil || int(st.Uid) != uid {
			t.Errorf("_work/repo owned by %d (%v), want the runner account's %d", st.Uid, err, uid)
		}
		for _, f := range []string{".runner_migrated", ".credentials_migrated"} {
			if _, err := os.Stat(filepath.Join(root, f)); err == nil {
				t.Errorf("stale %s left", f)
			}
		}
	})
	t.Run("token", func(t *testing.T) {
		root := ownedRoot(t, u, nil)
		staleConfig(t, root)
		gh := fakeRegistration(t)
		var out lines
		cfg := config(root, &secret.Redactor{}, &out)
		cfg.User = u.Username
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o := listener.ConfigureOptions{URL: gh + "/o", Token: secret.New("AAAREGISTRATIONTOKEN0123456789"), Name: "r-2", Labels: []string{"a"}, WorkFolder: "_work"}
		if err := listener.Configure(ctx, cfg, o); err != nil {
			t.Fatal(err)
		}
		if id, err := listener.ReadRunnerID(root); id != 4242 || err != nil {
			t.Errorf("runner id %d, %v: the stale .runner was read", id, err)
		}
		for _, f := range []string{".credentials", ".credentials_rsaparams", ".runner_migrated"} {
			if b, err := os.ReadFile(filepath.Join(root, f)); err == nil && bytes.Contains(b, []byte("99")) {
				t.Errorf("stale %s left", f)
			}
		}
	})
}

func writeBehaviour(t *testing.T, root string, behaviour map[string]any) {
	t.Helper()
	b, _ := json.Marshal(behaviour)
	if err := os.WriteFile(filepath.Join(root, "fake-behaviour.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeRegistration is a fake GitHub that accepts any registration, as
// runner 4242; it returns its URL.
func fakeRegistration(t *testing.T) string {
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_fake/register" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id": 4242}`)
	}))
	t.Cleanup(gh.Close)
	return gh.URL
}
