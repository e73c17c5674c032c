// Package fitness checks that a host can run a job before a runner is
// started on it: on a GPU image the NVIDIA devices are there, the driver
// answers (nvidia-smi, as the container runtime mounts it: no cgo), its
// CUDA version is at least the image's, and the GPU count and memory are
// what was asked for; on every image the work folder has free disk and the
// container has memory left. It is what runpod-python's fitness checks do
// at start, for the worker's own needs.
//
// Check never fails: it returns a Report whose Problems say what is unfit.
// A Report is safe to show: it holds hardware facts, never input values.
package fitness

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// Limits are what the host must offer. Zero values check nothing, except
// that a GPU image always needs at least one GPU.
type Limits struct {
	GPU          bool   // the image is a GPU flavour
	MinCUDA      string // the image's CUDA version ("12.8.1"): the driver's must be at least its major.minor
	GPUCount     int    // exact number of GPUs wanted (0: at least one)
	MinGPUMemMiB int64  // every GPU has at least this much memory
	MinDiskMiB   int64  // free space in WorkDir
	MinMemMiB    int64  // memory available to the container
	WorkDir      string
}

// Report is what was measured and what is wrong. It is the `fitness`
// field of the worker's result and the `unfit` field of its error.
type Report struct {
	GPUs        []GPU    `json:"gpus,omitempty"`
	Driver      string   `json:"driver,omitempty"`
	CUDA        string   `json:"cuda,omitempty"`
	DiskFreeMiB int64    `json:"disk_free_mib"`
	MemFreeMiB  int64    `json:"memory_available_mib"`
	Problems    []string `json:"problems,omitempty"`
}

// GPU is one device as the driver reports it.
type GPU struct {
	Name      string `json:"name"`
	MemoryMiB int64  `json:"memory_mib"`
	UsedMiB   int64  `json:"memory_used_mib"`
}

// Fit reports whether nothing was wrong.
func (r Report) Fit() bool { return len(r.Problems) == 0 }

// Error is the one-line summary of the problems.
func (r Report) Error() string {
	if r.Fit() {
		return ""
	}
	s := "host unfit: " + r.Problems[0]
	if n := len(r.Problems) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return s
}

// Probe is how the host is read; Host reads the real one. Tests give
// fakes of each part.
type Probe struct {
	NvidiaSMI string        // program to run (default "nvidia-smi" on PATH)
	DevDir    string        // where nvidia device nodes live (default /dev)
	Proc      string        // procfs (default /proc)
	Cgroup    string        // cgroup v2 mount (default /sys/fs/cgroup)
	Timeout   time.Duration // for nvidia-smi (default 20 s)
}

// Host is the real machine.
var Host = Probe{}

func (p Probe) withDefaults() Probe {
	if p.NvidiaSMI == "" {
		p.NvidiaSMI = "nvidia-smi"
	}
	if p.DevDir == "" {
		p.DevDir = "/dev"
	}
	if p.Proc == "" {
		p.Proc = "/proc"
	}
	if p.Cgroup == "" {
		p.Cgroup = "/sys/fs/cgroup"
	}
	if p.Timeout <= 0 {
		p.Timeout = 20 * time.Second
	}
	return p
}

// Check measures the host against l.
func (p Probe) Check(ctx context.Context, l Limits) Report {
	p = p.withDefaults()
	var r Report
	if l.GPU {
		p.checkGPU(ctx, l, &r)
	}
	p.checkDisk(l, &r)
	p.checkMemory(l, &r)
	return r
}

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (p Probe) checkGPU(ctx context.Context, l Limits, r *Report) {
	devs, _ := filepath.Glob(filepath.Join(p.DevDir, "nvidia[0-9]*"))
	if len(devs) == 0 {
		r.problem("no NVIDIA device in %s (was the container started without GPUs?)", p.DevDir)
		return
	}
	log, err := p.smi(ctx)
	if err != nil {
		r.problem("the NVIDIA driver does not answer: %v", err)
		return
	}
	r.Driver, r.CUDA = log.Driver, log.CUDA
	for _, g := range log.GPUs {
		r.GPUs = append(r.GPUs, GPU{Name: g.Name, MemoryMiB: mib(g.Memory.Total), UsedMiB: mib(g.Memory.Used)})
	}
	checkCUDA(l.MinCUDA, log.CUDA, r)
	checkGPUs(l, r)
}

func checkCUDA(want, have string, r *Report) {
	if want == "" {
		return
	}
	w, okw := majorMinor(want)
	h, okh := majorMinor(have)
	switch {
	case !okw:
		r.problem("the image's CUDA version %q is not a version", short(want))
	case !okh:
		r.problem("the driver reports no CUDA version (%q)", short(have))
	case h.less(w):
		r.problem("the driver supports CUDA %s, the image needs %d.%d: the host's driver is too old", short(have), w.major, w.minor)
	}
}

func checkGPUs(l Limits, r *Report) {
	n := len(r.GPUs)
	switch {
	case n == 0:
		r.problem("the driver lists no GPU")
	case l.GPUCount > 0 && n != l.GPUCount:
		r.problem("%d GPUs, %d wanted", n, l.GPUCount)
	}
	for i, g := range r.GPUs {
		if l.MinGPUMemMiB > 0 && g.MemoryMiB < l.MinGPUMemMiB {
			r.problem("GPU %d (%s) has %d MiB, %d MiB wanted", i, short(g.Name), g.MemoryMiB, l.MinGPUMemMiB)
		}
	}
}

// Unmet is what a job needs that a fit host's report r lacks: at least
// count GPUs, each with at least minMemMiB (0: no need).
func Unmet(r Report, count int, minMemMiB int64) []string {
	var out []string
	if count > 0 && len(r.GPUs) < count {
		out = append(out, fmt.Sprintf("%d GPUs, the job wants %d", len(r.GPUs), count))
	}
	for i, g := range r.GPUs {
		if minMemMiB > 0 && g.MemoryMiB < minMemMiB {
			out = append(out, fmt.Sprintf("GPU %d (%s) has %d MiB, the job wants %d MiB", i, short(g.Name), g.MemoryMiB, minMemMiB))
		}
	}
	return out
}

// short bounds a value from the host before it goes into a message.
func short(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
