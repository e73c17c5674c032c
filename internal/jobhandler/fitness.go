package jobhandler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/runpod-workers/worker-github_runner/internal/fitness"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
)

// The fitness checks (package fitness) run before anything is registered
// or started: at the worker's start (StartupCheck), before each job, and
// in the selftest. An unfit host fails the job with a *runpod.UnfitError
// (its Detail is the fitness.Report), which asks RunPod to replace the
// worker; a fit one's report is the result's `fitness` field.

// StartupCheck runs the fitness checks once with the endpoint's limits
// (FITNESS_*, the image's WORKER_FLAVOUR and WORKER_CUDA_VERSION, the
// runner's work folder) and logs what it measured. Run it before the
// first job is taken (runpod.Options.StartupCheck = h.StartupCheck): an
// unfit host returns an error wrapping a *runpod.UnfitError, a bad
// FITNESS_* setting a plain error saying which; either way the worker
// should take no job and exit 1, so RunPod replaces it. With
// FITNESS_CHECK=off it checks nothing and returns nil.
func (h *Handler) StartupCheck(ctx context.Context) error {
	_, err := h.checkFitness(ctx, nil, h.logger())
	if err != nil {
		return fmt.Errorf("start-up fitness check: %w", err)
	}
	return nil
}

// fitnessFor checks the host for a job, before anything is registered or
// started. A JIT job's unfit error also carries its result: the runner
// its config registered stays, for the minting side.
func (h *Handler) fitnessFor(ctx context.Context, jobID string, in *Input) (*fitness.Report, error) {
	log := h.logger().With("request_id", jobID)
	r, err := h.checkFitness(ctx, in, log)
	var unfit *runpod.UnfitError
	if in.JIT != nil && errors.As(err, &unfit) {
		res := jitResult(in)
		leaveRunner(res, log)
		unfit.Message = describe(errors.New(unfit.Message), res)
		return nil, &JobError{Err: unfit, Result: res, text: unfit.Message}
	}
	return r, err
}

// checkFitness measures the host against the endpoint's limits, then
// against the job's needs (in nil: the endpoint's alone). The report is
// nil when the checks are off. A host below the endpoint's limits is
// broken: a *runpod.UnfitError that has RunPod replace the worker. A sound
// host short of what this job asks for (more GPUs or GPU memory) fails
// only the job, in the same form, with KeepWorker: replacing a healthy
// worker would not help.
func (h *Handler) checkFitness(ctx context.Context, in *Input, log *slog.Logger) (*fitness.Report, error) {
	l, on, err := h.fitnessLimits(in)
	if err != nil || !on {
		return nil, err
	}
	r := h.Probe.Check(ctx, l)
	if !r.Fit() {
		h.unfit.Store(true)
		log.Error("host unfit: this worker takes no more jobs and RunPod is asked to replace it", "problems", strings.Join(r.Problems, "; "))
		return &r, &runpod.UnfitError{Message: r.Error(), Detail: r}
	}
	if in != nil {
		if unmet := fitness.Unmet(r, in.GPUCount, in.MinGPUMemMiB); len(unmet) > 0 {
			job := r
			job.Problems = unmet
			log.Warn("this worker cannot run the job", "problems", strings.Join(unmet, "; "))
			return &job, &runpod.UnfitError{Message: "this worker cannot run the job: " + strings.Join(unmet, "; "), Detail: job, KeepWorker: true}
		}
	}
	log.Info("host fit", "gpus", gpuNames(r.GPUs), "driver", r.Driver, "cuda", r.CUDA,
		"disk_free_mib", r.DiskFreeMiB, "memory_available_mib", r.MemFreeMiB)
	return &r, nil
}

// fitnessLimits are the endpoint's limits; on is false when
// FITNESS_CHECK=off. A job asking a CPU image for GPUs is an error.
func (h *Handler) fitnessLimits(in *Input) (l fitness.Limits, on bool, err error) {
	l, on, err = fitness.FromEnv(h.imageEnv, h.workFolder())
	if err != nil || !on {
		return l, false, err
	}
	if in != nil && !l.GPU && (in.GPUCount > 0 || in.MinGPUMemMiB > 0) {
		return l, false, fmt.Errorf("GPUs are asked for (gpu_count, min_gpu_memory_mb, or the endpoint's %s, %s), but this worker's image is not a GPU image (%s=%s)",
			jobapi.EnvGPUCount, jobapi.EnvMinGPUMemory, fitness.EnvFlavour, h.imageEnv(fitness.EnvFlavour))
	}
	return l, true, nil
}

// imageEnv is getenv with the handler's Flavour and CUDA, which win as
// they do for the labels.
func (h *Handler) imageEnv(k string) string {
	switch {
	case k == fitness.EnvFlavour && h.Flavour != "":
		return h.Flavour
	case k == fitness.EnvCUDA && h.CUDA != "":
		return h.CUDA
	}
	return h.getenv(k)
}

// workFolder is where the runner's jobs write: its _work folder, or the
// runner's root before the first job made one.
func (h *Handler) workFolder() string {
	root := h.runnerRoot()
	if fi, err := os.Stat(filepath.Join(root, "_work")); err == nil && fi.IsDir() {
		return filepath.Join(root, "_work")
	}
	return root
}

func (h *Handler) logger() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

func gpuNames(gs []fitness.GPU) string {
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = fmt.Sprintf("%s (%d MiB)", g.Name, g.MemoryMiB)
	}
	return strings.Join(names, ", ")
}

// needs reads gpu_count and min_gpu_memory_mb, else their endpoint
// variables.
func (p *inputParser) needs(out *Input) {
	n, err := wholeNumber("gpu_count", p.in.GPUCount, jobapi.EnvGPUCount, p.getenv, 64, "of GPUs from 0 to 64")
	p.check(err)
	out.GPUCount = int(n)
	out.MinGPUMemMiB, err = wholeNumber("min_gpu_memory_mb", p.in.MinGPUMemory, jobapi.EnvMinGPUMemory, p.getenv, 1<<40, "of MiB")
	p.check(err)
}

// wholeNumber reads a field given as a JSON number or a string of digits,
// else its endpoint variable; 0 when neither is set.
func wholeNumber(name string, raw json.RawMessage, env string, getenv func(string) string, limit int64, what string) (int64, error) {
	where, v := "the endpoint's "+env, getenv(env)
	if given(raw) {
		where, v = name, string(raw)
		var s string
		if json.Unmarshal(raw, &s) == nil {
			v = s
		}
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > limit {
		return 0, fmt.Errorf("%s must be a whole number %s", where, what)
	}
	return n, nil
}
