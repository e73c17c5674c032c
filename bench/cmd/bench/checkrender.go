package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/imagegen"
)

// checkRender is the performance regression check for `imagegen print` and
// `render`: it resolves, prints and renders (without the linter) variants.hcl
// plus a matrix of 1,000 combinations, in this process, several times, and
// fails when the best run's CPU time exceeds the limit. CPU time, not wall
// time: other processes on a loaded CI machine delay a run but add little
// to its CPU time. bench/RESULTS.md section 6 has the normal figure (about
// 0.2 s; this check measures about 0.4 s of CPU on the 2-core CI machine):
// the default limit (2 s) is five times that, and a tenfold slowdown still
// exceeds it. Run it without -race (the race detector alone costs 5-10x).
func checkRender(args []string) int {
	fs := flag.NewFlagSet("check-render", flag.ExitOnError)
	limit := fs.Duration("limit", 2*time.Second, "fail when the best run's CPU time is above this")
	runs := fs.Int("runs", 5, "runs; the best counts")
	fs.Parse(args)
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "check-render: --runs must be at least 1")
		return 2
	}
	src, err := os.ReadFile("variants.hcl")
	if err != nil {
		fmt.Fprintf(os.Stderr, "check-render: run it from the repository root: %v\n", err)
		return 1
	}
	unsetFileVariables(src)
	scratch, err := os.MkdirTemp(tmpfs(), "wgr-check-render-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "check-render: %v\n", err)
		return 1
	}
	defer os.RemoveAll(scratch)
	var cpu, wall []time.Duration
	for r := 0; r < *runs; r++ {
		c, w, err := printAndRender(filepath.Join(scratch, fmt.Sprint("out-", r)))
		if err != nil {
			fmt.Fprintf(os.Stderr, "check-render: %v\n", err)
			return 1
		}
		cpu, wall = append(cpu, c), append(wall, w)
	}
	best := slices.Min(cpu)
	fmt.Printf("check-render: print+render of 1,003 variants: best CPU time %v of %d runs (wall %v), limit %v\n",
		best.Round(time.Millisecond), *runs, slices.Min(wall).Round(time.Millisecond), *limit)
	if best > *limit {
		fmt.Fprintf(os.Stderr, "check-render: FAIL: %v is above the limit %v; compare with bench/RESULTS.md section 6 (go test -bench PrintRender1000 ./internal/imagegen profiles it)\n", best.Round(time.Millisecond), *limit)
		return 1
	}
	return 0
}

// matrixFile is a variant of 1,000 combinations, read beside variants.hcl.
const matrixFile = "internal/imagegen/testdata/matrix-1000.hcl"

// printAndRender runs imagegen print and render once, in this process, and
// checks that every variant was rendered.
func printAndRender(out string) (cpu, wall time.Duration, err error) {
	var stderr bytes.Buffer
	files := []string{"-f", "variants.hcl", "-f", matrixFile}
	c0, w0 := cpuTime(), time.Now()
	if code := imagegen.Main(append(files, "print"), io.Discard, &stderr); code != 0 {
		return 0, 0, fmt.Errorf("print: exit %d: %s", code, stderr.String())
	}
	if code := imagegen.Main(append(files, "render", "--no-lint", "--out", out), io.Discard, &stderr); code != 0 {
		return 0, 0, fmt.Errorf("render: exit %d: %s", code, stderr.String())
	}
	cpu, wall = cpuTime()-c0, time.Since(w0)
	entries, err := os.ReadDir(out)
	if err != nil {
		return 0, 0, err
	}
	if len(entries) != 1003 {
		return 0, 0, fmt.Errorf("render wrote %d files, want 1003", len(entries))
	}
	return cpu, wall, os.RemoveAll(out)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// unsetFileVariables clears the environment variables variants.hcl reads,
// so the shell cannot change what is measured.
func unsetFileVariables(src []byte) {
	for _, m := range regexp.MustCompile(`(?m)^variable "([A-Z0-9_]+)"`).FindAllSubmatch(src, -1) {
		os.Unsetenv(string(m[1]))
	}
}

// tmpfs is /dev/shm when there is one: on a VM disk the cost of creating a
// file varies tenfold between runs, which would measure the disk.
func tmpfs() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return ""
}
