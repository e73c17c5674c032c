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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/fitness"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

// smiXML is `nvidia-smi -q -x` as a driver supporting CUDA cuda prints
// it (cut), for GPUs given as "name=MiB".
func smiXML(cuda string, gpus ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\" ?>\n<nvidia_smi_log>\n<driver_version>570.124.06</driver_version>\n"+
		"<cuda_version>%s</cuda_version>\n<attached_gpus>%d</attached_gpus>\n", cuda, len(gpus))
	for i, g := range gpus {
		name, mem, _ := strings.Cut(g, "=")
		fmt.Fprintf(&b, "<gpu id=\"00000000:0%d:00.0\">\n<product_name>%s</product_name>\n<fb_memory_usage>\n"+
			"<total>%s MiB</total>\n<used>1 MiB</used>\n<free>%s MiB</free>\n</fb_memory_usage>\n</gpu>\n", i+1, name, mem, mem)
	}
	b.WriteString("</nvidia_smi_log>\n")
	return b.String()
}

// fakeHost is a machine for the fitness checks: devices nvidia device
// nodes, an nvidia-smi that runs script (none when script is ""), 8000
// MiB of memory available. The disk is the real one.
func fakeHost(t *testing.T, devices int, script string) fitness.Probe {
	t.Helper()
	dir := t.TempDir()
	p := fitness.Probe{NvidiaSMI: filepath.Join(dir, "nvidia-smi"), DevDir: filepath.Join(dir, "dev"),
		Proc: filepath.Join(dir, "proc"), Cgroup: filepath.Join(dir, "cgroup"), Timeout: 5 * time.Second}
	for _, d := range []string{p.DevDir, p.Proc, p.Cgroup} {
		mustDo(t, os.Mkdir(d, 0o755))
	}
	for i := range devices {
		mustDo(t, os.WriteFile(filepath.Join(p.DevDir, fmt.Sprintf("nvidia%d", i)), nil, 0o644))
	}
	mustDo(t, os.WriteFile(filepath.Join(p.Proc, "meminfo"), []byte("MemTotal: 16384000 kB\nMemAvailable: 8192000 kB\n"), 0o644))
	if script != "" {
		mustDo(t, os.WriteFile(p.NvidiaSMI, []byte("#!/bin/sh\n"+script), 0o755))
	}
	return p
}

// printsXML is an nvidia-smi script printing xml.
func printsXML(t *testing.T, xml string) string {
	f := filepath.Join(t.TempDir(), "smi.xml")
	mustDo(t, os.WriteFile(f, []byte(xml), 0o644))
	return "cat " + f + "\n"
}

// goodGPUHost is one NVIDIA L4 with a driver for CUDA 12.8: fit for the
// tests' image (CUDA 12.6.3).
func goodGPUHost(t *testing.T) fitness.Probe {
	return fakeHost(t, 1, printsXML(t, smiXML("12.8", "NVIDIA L4=23034")))
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	appKeyOnce sync.Once
	appKey     *rsa.PrivateKey
)

// useApp makes e's endpoint credential a GitHub App's (no PAT).
func useApp(t *testing.T, e *env) {
	appKeyOnce.Do(func() { appKey, _ = rsa.GenerateKey(rand.Reader, 2048) })
	e.gh.AppKey, e.gh.AppID = &appKey.PublicKey, "4242"
	delete(e.env, jobapi.EnvPAT)
	e.env[jobapi.EnvAppID], e.env[jobapi.EnvAppInstall] = "4242", "77"
	e.env[jobapi.EnvAppPrivateKey] = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey)}))
}

// fitnessModes are the ways a job gets its runner: registered by the
// worker (JIT, token; with a PAT or a GitHub App), or brought registered
// (jitconfig). Each returns the job's input.
var fitnessModes = map[string]func(t *testing.T, e *env) map[string]any{
	"jit":   func(*testing.T, *env) map[string]any { return map[string]any{} },
	"token": func(*testing.T, *env) map[string]any { return map[string]any{"mode": "token"} },
	"app":   func(t *testing.T, e *env) map[string]any { useApp(t, e); return map[string]any{} },
	"jitconfig": func(t *testing.T, e *env) map[string]any {
		jit, _ := mintJIT(t, e, "orgs/my-org", "minted-fit")
		return map[string]any{"jitconfig": jit}
	},
}

// An unfit host fails the job at once with the error that asks RunPod to
// replace the worker: no GitHub call, no runner registered, the runner
// never started.
func TestUnfitHostRegistersNothing(t *testing.T) {
	good := smiXML("12.8", "NVIDIA L4=23034")
	for name, c := range map[string]struct {
		devices int
		script  func(t *testing.T) string
		env     map[string]string
		input   map[string]any
		want    string
	}{
		"no GPU device":      {0, func(t *testing.T) string { return printsXML(t, good) }, nil, nil, "no NVIDIA device"},
		"nvidia-smi missing": {1, func(*testing.T) string { return "" }, nil, nil, "nvidia-smi not found"},
		"driver fails": {1, func(*testing.T) string {
			return "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' >&2; exit 9\n"
		}, nil, nil, "nvidia-smi: exit status 9: NVIDIA-SMI has failed"},
		"old driver": {1, func(t *testing.T) string { return printsXML(t, smiXML("12.2", "NVIDIA L4=23034")) }, nil, nil,
			"the driver supports CUDA 12.2, the image needs 12.6"},
		"endpoint's GPU count": {1, func(t *testing.T) string { return printsXML(t, good) }, map[string]string{fitness.EnvGPUCount: "2"}, nil, "1 GPUs, 2 wanted"},
		"job's GPU count":      {1, func(t *testing.T) string { return printsXML(t, good) }, nil, map[string]any{"gpu_count": 2}, "1 GPUs, the job wants 2"},
		"job's GPU memory": {1, func(t *testing.T) string { return printsXML(t, good) }, nil, map[string]any{"min_gpu_memory_mb": "40000"},
			"has 23034 MiB, the job wants 40000 MiB"},
		"disk": {1, func(t *testing.T) string { return printsXML(t, good) }, map[string]string{fitness.EnvMinDisk: "1099511627776"}, nil, "MiB free in "},
		"memory": {1, func(t *testing.T) string { return printsXML(t, good) }, map[string]string{fitness.EnvMinMemory: "9000"}, nil,
			"8000 MiB memory available, 9000 MiB wanted"},
	} {
		for mode, input := range fitnessModes {
			t.Run(name+"/"+mode, func(t *testing.T) {
				e := newEnv(t, nil)
				script := c.script(t)
				e.handler.Probe = fakeHost(t, c.devices, script)
				for k, v := range c.env {
					e.env[k] = v
				}
				in := input(t, e)
				for k, v := range c.input {
					in[k] = v
				}
				minted, n := e.gh.Runners(), len(e.gh.Requests())
				_, err, _ := e.run(t, context.Background(), in)
				keep := strings.HasPrefix(name, "job's")
				report := assertUnfit(t, err, c.want, keep)
				if calls := e.gh.Requests()[n:]; len(calls) != 0 {
					t.Errorf("%d GitHub calls after the host was found unfit, first %s %s", len(calls), calls[0].Method, calls[0].Path)
				}
				if rs := e.gh.Runners(); len(rs) != len(minted) {
					t.Errorf("runners registered: %+v", rs)
				}
				if _, err := os.Stat(filepath.Join(e.dumpDir, "dump.json")); err == nil {
					t.Error("the runner ran a job")
				}
				if c.devices > 0 && strings.HasPrefix(script, "cat ") && report.Driver != "570.124.06" {
					t.Errorf("the report lacks what was measured: %+v", report)
				}
				if mode == "jitconfig" {
					assertLeftToMinter(t, err)
				}
				// The worker is replaced: no sweep either. (A sound worker
				// that cannot run this one job stays.)
				if keep {
					return
				}
				if err := e.handler.Sweep(context.Background()); err != nil || len(e.gh.Requests()) != n {
					t.Errorf("a sweep after the unfit job: %v, %d GitHub calls", err, len(e.gh.Requests())-n)
				}
			})
		}
	}
}

// assertUnfit checks err is the unfit error, one line, whose report says
// want, keeping the worker or not; it returns the report.
func assertUnfit(t *testing.T, err error, want string, keep bool) fitness.Report {
	t.Helper()
	var unfit *runpod.UnfitError
	if !errors.As(err, &unfit) {
		t.Fatalf("err = %v, want a *runpod.UnfitError", err)
	}
	report, ok := unfit.Detail.(fitness.Report)
	if !ok || report.Fit() || !strings.Contains(strings.Join(report.Problems, "\n"), want) {
		t.Fatalf("detail %#v, want a report saying %q", unfit.Detail, want)
	}
	prefix := map[bool]string{false: "host unfit: ", true: "this worker cannot run the job: "}[keep]
	if unfit.KeepWorker != keep {
		t.Errorf("KeepWorker = %v, want %v", unfit.KeepWorker, keep)
	}
	if !strings.HasPrefix(unfit.Message, prefix) || strings.Contains(unfit.Message, "\n") || len(unfit.Message) > 600 {
		t.Errorf("message %q", unfit.Message)
	}
	if b, err := json.Marshal(unfit.Detail); err != nil || !strings.Contains(string(b), `"problems":[`) {
		t.Errorf("detail as JSON: %s %v", b, err)
	}
	return report
}

// assertLeftToMinter checks a JIT job's unfit error says its runner stays
// registered, for the side that minted it.
func assertLeftToMinter(t *testing.T, err error) {
	t.Helper()
	var je *JobError
	if !errors.As(err, &je) || je.Result == nil || je.Result.RunnerLeft == nil || je.Result.RunnerLeft.Name != "minted-fit" {
		t.Fatalf("a JIT job's unfit error does not say its runner is left: %#v", err)
	}
	if !strings.Contains(err.Error(), "may still be registered") || !strings.Contains(err.Error(), "the side that minted its JIT config removes it") {
		t.Errorf("message %q", err)
	}
}

// A fit host runs the job, and the result records what it measured, in
// every mode.
func TestFitHostResultCarriesFitness(t *testing.T) {
	for _, mode := range []string{"jit", "token", "jitconfig"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, nil)
			res, err, rec := e.run(t, context.Background(), fitnessModes[mode](t, e))
			if err != nil || !res.JobRan {
				t.Fatalf("%v %+v\n%s", err, res, e.logs.String())
			}
			f := res.Fitness
			if f == nil || len(f.GPUs) != 1 || f.GPUs[0].Name != "NVIDIA L4" || f.GPUs[0].MemoryMiB != 23034 || f.Driver != "570.124.06" ||
				f.CUDA != "12.8" || f.DiskFreeMiB <= 0 || f.MemFreeMiB != 8000 || len(f.Problems) != 0 {
				t.Fatalf("fitness %+v", f)
			}
			b, _ := json.Marshal(res)
			if !strings.Contains(string(b), `"fitness":{"gpus":[{"name":"NVIDIA L4","memory_mib":23034,"memory_used_mib":1}],"driver":"570.124.06","cuda":"12.8","disk_free_mib":`) {
				t.Errorf("result JSON %s", b)
			}
			if !strings.Contains(e.logs.String(), "msg=\"host fit\" request_id=job-1 gpus=\"NVIDIA L4 (23034 MiB)\"") {
				t.Errorf("logs:\n%s", e.logs.String())
			}
			if mode != "jitconfig" {
				e.assertClean(t, rec, e.gh.Issued()...)
			}
		})
	}
}

// A CPU image checks disk and memory only: a host without GPU or
// nvidia-smi is fit. A job asking a CPU image for GPUs is refused.
func TestCPUImageSkipsGPUChecks(t *testing.T) {
	e := newEnv(t, nil)
	e.env[fitness.EnvFlavour] = "cpu"
	e.handler.Probe = fakeHost(t, 0, "")
	res, err, rec := e.run(t, context.Background(), map[string]any{})
	if err != nil || !res.JobRan || res.Fitness == nil || len(res.Fitness.GPUs) != 0 || res.Fitness.DiskFreeMiB <= 0 {
		t.Fatalf("%v %+v", err, res)
	}
	e.assertClean(t, rec, e.gh.Issued()...)
	n := len(e.gh.Requests())
	_, err, _ = e.run(t, context.Background(), map[string]any{"gpu_count": 1})
	var unfit *runpod.UnfitError
	if err == nil || errors.As(err, &unfit) || !strings.Contains(err.Error(), "not a GPU image (WORKER_FLAVOUR=cpu)") {
		t.Errorf("gpu_count on a CPU image: %v", err)
	}
	if len(e.gh.Requests()) != n {
		t.Error("GitHub was called")
	}
}

// FITNESS_CHECK=off checks nothing: a job runs on a host without GPU and
// its result has no fitness field.
func TestFitnessCheckOff(t *testing.T) {
	e := newEnv(t, nil)
	e.env[fitness.EnvCheck] = "off"
	e.handler.Probe = fakeHost(t, 0, "")
	res, err, _ := e.run(t, context.Background(), map[string]any{"gpu_count": 8})
	if err != nil || !res.JobRan || res.Fitness != nil {
		t.Fatalf("%v %+v", err, res)
	}
	e.env[fitness.EnvCheck] = "maybe"
	if _, err, _ := e.run(t, context.Background(), map[string]any{}); err == nil || !strings.Contains(err.Error(), "FITNESS_CHECK must be on or off") {
		t.Errorf("a bad FITNESS_CHECK: %v", err)
	}
}

// gpu_count and min_gpu_memory_mb: a whole number or one as a string,
// else the endpoint's variable; anything else is refused by name, without
// echoing the value.
func TestGPUNeedsInput(t *testing.T) {
	env := map[string]string{jobapi.EnvPAT: pat, jobapi.EnvOrg: "my-org", jobapi.EnvGPUCount: "4", jobapi.EnvMinGPUMemory: "20000"}
	getenv := func(k string) string { return env[k] }
	for input, want := range map[string][2]int64{
		`{}`:                  {4, 20000},
		`{"gpu_count": 2}`:    {2, 20000},
		`{"gpu_count": "0"}`:  {0, 20000},
		`{"gpu_count": null}`: {4, 20000},
		`{"min_gpu_memory_mb": 81920, "gpu_count": " 8 "}`: {8, 81920},
	} {
		in, err := ParseInput([]byte(input), getenv)
		if err != nil || int64(in.GPUCount) != want[0] || in.MinGPUMemMiB != want[1] {
			t.Errorf("%s: %v %+v", input, err, in)
		}
	}
	for input, want := range map[string]string{
		`{"gpu_count": 65}`:                   "gpu_count must be a whole number of GPUs from 0 to 64",
		`{"gpu_count": -1}`:                   "gpu_count must be",
		`{"gpu_count": 1.5}`:                  "gpu_count must be",
		`{"gpu_count": "two-secret-ish"}`:     "gpu_count must be",
		`{"gpu_count": true}`:                 "gpu_count must be",
		`{"min_gpu_memory_mb": "lots"}`:       "min_gpu_memory_mb must be a whole number of MiB",
		`{"min_gpu_memory_mb": 1e6}`:          "min_gpu_memory_mb must be",
		`{"min_gpu_memory_mb": [1]}`:          "min_gpu_memory_mb must be",
		`{"jitconfig": "x", "gpu_count": 99}`: "gpu_count must be",
	} {
		_, err := ParseInput([]byte(input), getenv)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "secret-ish") {
			t.Errorf("%s: %v", input, err)
		}
	}
	env[jobapi.EnvGPUCount] = "many"
	if _, err := ParseInput([]byte(`{}`), getenv); err == nil || !strings.Contains(err.Error(), "the endpoint's FITNESS_GPU_COUNT must be") {
		t.Errorf("a bad FITNESS_GPU_COUNT: %v", err)
	}
	if _, err := ParseInput([]byte(`{"gpu_count": 1}`), getenv); err != nil {
		t.Errorf("the job's gpu_count wins over a bad endpoint value: %v", err)
	}
}

// The selftest reports the fitness checks; an unfit host fails it with
// the jobs' error.
func TestSelfTestReportsFitness(t *testing.T) {
	e := newEnv(t, nil)
	out, err := e.handler.Handle(context.Background(), &runpod.Job{ID: "s", Input: []byte(`{"selftest": true}`)}, &recorder{})
	st, _ := out.(*SelfTest)
	if err != nil || st == nil || !st.OK || !st.GPUVisible || st.Fitness == nil || st.Fitness.GPUs[0].Name != "NVIDIA L4" {
		t.Fatalf("%v %+v", err, out)
	}
	e.handler.Probe = fakeHost(t, 1, printsXML(t, smiXML("11.8", "NVIDIA L4=23034")))
	out, err = e.handler.Handle(context.Background(), &runpod.Job{ID: "s", Input: []byte(`{"selftest": true}`)}, &recorder{})
	var unfit *runpod.UnfitError
	if !errors.As(err, &unfit) || !strings.Contains(unfit.Message, "selftest failed: the driver supports CUDA 11.8") {
		t.Fatalf("%v", err)
	}
	if r, ok := unfit.Detail.(fitness.Report); !ok || r.Driver != "570.124.06" || r.Fit() {
		t.Errorf("detail %#v", unfit.Detail)
	}
	if st, _ := out.(*SelfTest); st == nil || st.OK || st.Fitness == nil {
		t.Errorf("%+v", out)
	}
	if n := len(e.gh.Requests()); n != 0 {
		t.Errorf("selftest called GitHub %d times", n)
	}
}

// StartupCheck runs the checks with the endpoint's limits.
func TestStartupCheck(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.handler.StartupCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.env[fitness.EnvGPUCount] = "2"
	err := e.handler.StartupCheck(context.Background())
	assertUnfit(t, err, "1 GPUs, 2 wanted", false)
	if !strings.HasPrefix(err.Error(), "start-up fitness check: host unfit: 1 GPUs, 2 wanted") {
		t.Errorf("err = %v", err)
	}
	e.env[fitness.EnvMinDisk] = "-5"
	if err := e.handler.StartupCheck(context.Background()); err == nil || !strings.Contains(err.Error(), "FITNESS_MIN_DISK_MB must be a whole number") {
		t.Errorf("bad setting: %v", err)
	}
	e.env[fitness.EnvCheck] = "off"
	e.handler.Probe = fakeHost(t, 0, "")
	if err := e.handler.StartupCheck(context.Background()); err != nil {
		t.Errorf("checks off: %v", err)
	}
	if n := len(e.gh.Requests()); n != 0 {
		t.Errorf("the start-up check called GitHub %d times", n)
	}
}

// runLoop runs e's handler in a RunPod job loop against p, with the
// handler's start-up check; it returns Run's result channel.
func runLoop(t *testing.T, e *env, p *runpodtest.Platform) chan error {
	t.Helper()
	penv := p.Env("pod42")
	cfg, err := runpod.ConfigFromEnv(func(k string) string { return penv[k] })
	if err != nil {
		t.Fatal(err)
	}
	w, err := runpod.NewJobLoop(runpod.Options{Config: cfg, Handler: e.handler, Logger: e.handler.Log, TakeTimeout: 2 * time.Second,
		StartupCheck: e.handler.StartupCheck})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	return done
}

// Through RunPod: a job asking for more than a sound worker has fails in
// the unfit form without stopPod, and the worker takes the next job; a job
// on a host that became unfit (its driver stopped answering) fails with the
// JSON error whose "unfit" key is the report, asks for the worker's
// replacement (stopPod), and the worker takes no more jobs; a host unfit
// at start takes no job at all.
func TestUnfitThroughRunPod(t *testing.T) {
	e := newEnv(t, nil)
	calls := filepath.Join(t.TempDir(), "calls")
	// nvidia-smi answers the start-up check and the first job's check,
	// then the driver is gone.
	e.handler.Probe = fakeHost(t, 1, fmt.Sprintf("echo x >> %s\nif [ $(wc -l < %s) -gt 2 ]; then echo 'driver gone' >&2; exit 9; fi\n%s",
		calls, calls, printsXML(t, smiXML("12.8", "NVIDIA L4=23034"))))
	p := runpodtest.New()
	defer p.Close()
	p.AddJob("needs-2", map[string]any{"gpu_count": 2})
	done := runLoop(t, e, p)
	post, err := p.WaitFinal("needs-2", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		ErrorType string         `json:"error_type"`
		Message   string         `json:"error_message"`
		Unfit     fitness.Report `json:"unfit"`
	}
	s, _ := post.Body["error"].(string)
	if err := json.Unmarshal([]byte(s), &body); err != nil || post.Body["stopPod"] != nil || body.ErrorType != "UnfitError" ||
		body.Message != "this worker cannot run the job: 1 GPUs, the job wants 2" || body.Unfit.GPUs[0].Name != "NVIDIA L4" {
		t.Fatalf("job-done %v (%v)", post.Body, err)
	}
	p.AddJob("driver-gone", map[string]any{})
	if post, err = p.WaitFinal("driver-gone", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	s, _ = post.Body["error"].(string)
	if err := json.Unmarshal([]byte(s), &body); err != nil || post.Body["stopPod"] != true || body.ErrorType != "UnfitError" ||
		!strings.Contains(body.Message, "driver gone") || !strings.Contains(body.Unfit.Problems[0], "does not answer") {
		t.Fatalf("job-done %v (%v)", post.Body, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker went on taking jobs after an unfit one")
	}
	if n := len(e.gh.Requests()); n != 0 {
		t.Errorf("%d GitHub calls", n)
	}

	e.handler.Probe = goodGPUHost(t)
	e.env[fitness.EnvGPUCount] = "2"
	p2 := runpodtest.New()
	defer p2.Close()
	p2.AddJob("never", map[string]any{})
	err = <-runLoop(t, e, p2)
	var unfit *runpod.UnfitError
	if !errors.As(err, &unfit) || !strings.Contains(err.Error(), "1 GPUs, 2 wanted") {
		t.Errorf("Run = %v", err)
	}
	if takes, _ := p2.Takes(); len(takes) != 0 {
		t.Errorf("%d takes after a failed start-up check", len(takes))
	}
}
