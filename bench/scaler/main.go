// Command scaler measures the RunPod scale-set scaler (cmd/scaler, the
// real binary) against the scale-set fake (internal/scalesettest) and
// RunPod's fake endpoint API (internal/runpod/runpodtest, no workers, so
// RunPod jobs stay queued):
//
//   - latency: from a job being queued and offered to the scale set to the
//     scaler's RunPod /run request (which the fake time-stamps), one job at
//     a time, median of many;
//
//   - memory: the scaler's resident memory (VmRSS, VmHWM) with 3 scale sets
//     and 100 queued jobs, once every runner is started and its RunPod job
//     polled.
//
//     go run ./bench/scaler [--jobs 100] [--samples 50]
//
// It prints a Markdown report (bench/SCALER.md holds the last one).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	"github.com/runpod-workers/worker-github_runner/internal/scalesettest"
)

const (
	pat = "ghp_BENCHPAT0123456789abcdefghijklmn"
	key = "rpa_BENCHKEY0123456789abcdefghij"
)

func main() {
	samples := flag.Int("samples", 50, "latency samples")
	jobs := flag.Int("jobs", 100, "queued jobs for the memory measurement")
	flag.Parse()
	dir, err := os.MkdirTemp("", "bench-scaler-")
	check(err)
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "scaler")
	out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/scaler").CombinedOutput()
	check(err, string(out))

	lat := latency(bin, dir, *samples)
	idle, rss, hwm, took := memory(bin, dir, *jobs)
	slices.Sort(lat)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	fmt.Printf("# Scaler benchmark\n\nWritten by `go run ./bench/scaler` on %s. %s, %d CPUs, %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Printf("## Job assigned to RunPod /run\n\nFrom a job queued (the fake offers it to the scale set at once) to the scaler's `/run` request, "+
		"one job at a time, %d samples: the long poll's answer, acquirejobs, the statistics, generatejitconfig, then /run.\n\n", len(lat))
	fmt.Printf("| median | p90 | min | max |\n|---|---|---|---|\n| %s ms | %s ms | %s ms | %s ms |\n\n",
		ms(lat[len(lat)/2]), ms(lat[len(lat)*9/10]), ms(lat[0]), ms(lat[len(lat)-1]))
	fmt.Printf("## Memory\n\nThe scaler process with 3 scale sets, before any job and with %d queued jobs (each scale set's max_runners %d, "+
		"so every job gets a runner and a RunPod job, all polled every second); all %d runners started in %s.\n\n", *jobs, *jobs, *jobs, took.Round(time.Millisecond))
	fmt.Printf("| | VmRSS | VmHWM (peak) |\n|---|---|---|\n| idle, 3 scale sets | %s | |\n| %d queued jobs | %s | %s |\n", idle, *jobs, rss, hwm)
}

func check(err error, more ...string) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/scaler:", err, strings.Join(more, " "))
		os.Exit(1)
	}
}

type env struct {
	f   *scalesettest.Fake
	p   *runpodtest.Platform
	eps []*runpodtest.Endpoint
	cmd *exec.Cmd
}

// start runs the scaler binary with one scale set per name.
func start(bin, dir string, max int, names ...string) *env {
	e := &env{f: scalesettest.New(pat), p: runpodtest.New()}
	var sets strings.Builder
	for _, n := range names {
		ep := e.p.Endpoint("ep-"+n, key)
		e.eps = append(e.eps, ep)
		fmt.Fprintf(&sets, "scale_set %q {\n  endpoint = %q\n  max_runners = %d\n}\n", n, ep.ID(), max)
	}
	cfg := fmt.Sprintf("github_url = %q\nrunpod_api_url = %q\nstate_file = %q\ncheck_interval = \"1s\"\n%s",
		e.f.ConfigURL("octo"), e.eps[0].URL(), filepath.Join(dir, fmt.Sprintf("state-%d.json", time.Now().UnixNano())), sets.String())
	path := filepath.Join(dir, "scaler.hcl")
	check(os.WriteFile(path, []byte(cfg), 0o644))
	e.cmd = exec.Command(bin, "--config", path, "--log-level", "warn")
	e.cmd.Env = []string{"GITHUB_PAT=" + pat, "RUNPOD_API_KEY=" + key}
	e.cmd.Stderr = os.Stderr
	check(e.cmd.Start())
	until(30*time.Second, func() bool { return len(e.f.Sessions()) == len(names) })
	return e
}

func (e *env) stop() {
	e.cmd.Process.Kill()
	e.cmd.Wait()
	e.f.Close()
	e.p.Close()
}

func until(timeout time.Duration, cond func() bool) {
	for end := time.Now().Add(timeout); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			check(fmt.Errorf("timed out"))
		}
	}
}

func latency(bin, dir string, n int) []time.Duration {
	e := start(bin, dir, 10*n, "runpod-gpu")
	defer e.stop()
	var out []time.Duration
	for i := range n + 3 {
		t0 := time.Now()
		e.f.QueueJob("runpod-gpu")
		until(10*time.Second, func() bool { return len(e.eps[0].Jobs()) == i+1 })
		if i >= 3 { // warm-up
			out = append(out, e.eps[0].Jobs()[i].Submitted.Sub(t0))
		}
	}
	return out
}

func memory(bin, dir string, jobs int) (idle, rss, hwm string, took time.Duration) {
	names := []string{"runpod-a", "runpod-b", "runpod-c"}
	e := start(bin, dir, jobs, names...)
	defer e.stop()
	time.Sleep(2 * time.Second)
	idle, _ = status(e.cmd.Process.Pid)
	t0 := time.Now()
	for i := range jobs {
		e.f.QueueJob(names[i%len(names)])
	}
	until(60*time.Second, func() bool {
		n := 0
		for _, ep := range e.eps {
			n += len(ep.Jobs())
		}
		return n == jobs
	})
	took = time.Since(t0)
	time.Sleep(3 * time.Second) // a few status rounds
	rss, hwm = status(e.cmd.Process.Pid)
	return idle, rss, hwm, took
}

// status reads VmRSS and VmHWM of a process.
func status(pid int) (rss, hwm string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "VmRSS:" {
			rss = f[1] + " kB"
		}
		if len(f) == 3 && f[0] == "VmHWM:" {
			hwm = f[1] + " kB"
		}
	}
	return rss, hwm
}
