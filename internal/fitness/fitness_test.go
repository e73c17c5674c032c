package fitness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gpuXML is nvidia-smi -q -x as a driver with CUDA 12.4 prints it (cut).
func gpuXML(cuda string, gpus ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM \"nvsmi_device_v12.dtd\">\n<nvidia_smi_log>\n"+
		"<timestamp>Fri Nov 27 09:00:00 2026</timestamp>\n<driver_version>550.54.15</driver_version>\n"+
		"<cuda_version>%s</cuda_version>\n<attached_gpus>%d</attached_gpus>\n", cuda, len(gpus))
	for i, g := range gpus {
		name, mem, _ := strings.Cut(g, "=")
		fmt.Fprintf(&b, "<gpu id=\"00000000:0%d:00.0\">\n<product_name>%s</product_name>\n<fb_memory_usage>\n"+
			"<total>%s MiB</total>\n<reserved>512 MiB</reserved>\n<used>1 MiB</used>\n<free>%s MiB</free>\n"+
			"</fb_memory_usage>\n</gpu>\n", i+1, name, mem, mem)
	}
	b.WriteString("</nvidia_smi_log>\n")
	return b.String()
}

// host is a fake machine: device nodes, an nvidia-smi script, procfs and
// cgroup files, all in temporary folders.
type host struct {
	t     *testing.T
	probe Probe
}

func newHost(t *testing.T, devices int, smiScript string) host {
	t.Helper()
	dir := t.TempDir()
	dev, proc, cg := filepath.Join(dir, "dev"), filepath.Join(dir, "proc"), filepath.Join(dir, "cgroup")
	for _, d := range []string{dev, proc, cg} {
		must(t, os.Mkdir(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(dev, "nvidiactl"), nil, 0o644))
	for i := range devices {
		must(t, os.WriteFile(filepath.Join(dev, fmt.Sprintf("nvidia%d", i)), nil, 0o644))
	}
	must(t, os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal:       16000000 kB\nMemFree:         8000000 kB\nMemAvailable:    8192000 kB\n"), 0o644))
	smi := filepath.Join(dir, "nvidia-smi")
	if smiScript != "" {
		must(t, os.WriteFile(smi, []byte("#!/bin/sh\n"+smiScript), 0o755))
	}
	return host{t, Probe{NvidiaSMI: smi, DevDir: dev, Proc: proc, Cgroup: cg, Timeout: 5 * time.Second}}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func printXML(t *testing.T, xml string) string {
	f := filepath.Join(t.TempDir(), "smi.xml")
	must(t, os.WriteFile(f, []byte(xml), 0o644))
	return "cat " + f + "\n"
}

var gpuLimits = Limits{GPU: true, MinCUDA: "12.4.1", WorkDir: os.TempDir()}

func TestGoodGPUHostIsFitAndReported(t *testing.T) {
	h := newHost(t, 2, printXML(t, gpuXML("12.4", "NVIDIA A100-SXM4-80GB=81920", "NVIDIA A100-SXM4-80GB=81920")))
	l := gpuLimits
	l.GPUCount, l.MinGPUMemMiB = 2, 40000
	r := h.probe.Check(context.Background(), l)
	if !r.Fit() {
		t.Fatalf("unfit: %v", r.Problems)
	}
	if r.Driver != "550.54.15" || r.CUDA != "12.4" || len(r.GPUs) != 2 || r.GPUs[0].Name != "NVIDIA A100-SXM4-80GB" || r.GPUs[0].MemoryMiB != 81920 || r.GPUs[0].UsedMiB != 1 {
		t.Fatalf("report: %+v", r)
	}
	if r.MemFreeMiB != 8000 || r.DiskFreeMiB <= 0 {
		t.Fatalf("memory %d MiB, disk %d MiB", r.MemFreeMiB, r.DiskFreeMiB)
	}
}

func TestUnfitGPUHosts(t *testing.T) {
	good := gpuXML("12.4", "NVIDIA L4=23034")
	for name, c := range map[string]struct {
		devices int
		script  func(t *testing.T) string
		limits  func(*Limits)
		want    string
	}{
		"no devices":    {0, func(t *testing.T) string { return printXML(t, good) }, nil, "no NVIDIA device"},
		"no nvidia-smi": {1, func(*testing.T) string { return "" }, nil, "nvidia-smi not found"},
		"driver fails": {1, func(*testing.T) string {
			return "echo 'NVIDIA-SMI has failed because it couldn'\"'\"'t communicate with the NVIDIA driver' >&2; exit 9\n"
		}, nil, "couldn't communicate"},
		"driver hangs":    {1, func(*testing.T) string { return "exec sleep 30\n" }, func(*Limits) {}, "did not answer"},
		"child holds out": {1, func(*testing.T) string { return "sleep 30 &\nexec sleep 30\n" }, func(*Limits) {}, "did not answer"},
		"garbage":         {1, func(*testing.T) string { return "echo '<nvidia_smi_log><gpu>'\n" }, nil, "does not parse"},
		"flood":           {1, func(*testing.T) string { return "exec head -c 6000000 /dev/zero\n" }, nil, "more than"},
		"old driver":      {1, func(t *testing.T) string { return printXML(t, gpuXML("11.8", "NVIDIA L4=23034")) }, nil, "driver supports CUDA 11.8, the image needs 12.4"},
		"no cuda version": {1, func(t *testing.T) string { return printXML(t, gpuXML("N/A", "NVIDIA L4=23034")) }, nil, "reports no CUDA version"},
		"no gpu listed":   {1, func(t *testing.T) string { return printXML(t, gpuXML("12.4")) }, nil, "lists no GPU"},
		"wrong count":     {1, func(t *testing.T) string { return printXML(t, good) }, func(l *Limits) { l.GPUCount = 2 }, "1 GPUs, 2 wanted"},
		"small memory":    {1, func(t *testing.T) string { return printXML(t, good) }, func(l *Limits) { l.MinGPUMemMiB = 40000 }, "has 23034 MiB, 40000 MiB wanted"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHost(t, c.devices, c.script(t))
			if name == "driver hangs" || name == "child holds out" {
				h.probe.Timeout = 200 * time.Millisecond
			}
			l := gpuLimits
			if c.limits != nil {
				c.limits(&l)
			}
			start := time.Now()
			r := h.probe.Check(context.Background(), l)
			if r.Fit() || !strings.Contains(strings.Join(r.Problems, "\n"), c.want) {
				t.Fatalf("problems %q, want one saying %q", r.Problems, c.want)
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("check took %s", time.Since(start))
			}
			if len(r.Error()) > 300 {
				t.Fatalf("error is %d bytes", len(r.Error()))
			}
		})
	}
}

func TestCPUImageNeedsNoGPU(t *testing.T) {
	h := newHost(t, 0, "")
	r := h.probe.Check(context.Background(), Limits{WorkDir: t.TempDir()})
	if !r.Fit() || len(r.GPUs) != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestDiskAndMemoryMinimums(t *testing.T) {
	h := newHost(t, 0, "")
	dir := t.TempDir()
	r := h.probe.Check(context.Background(), Limits{WorkDir: dir, MinDiskMiB: 1 << 40, MinMemMiB: 9000})
	got := strings.Join(r.Problems, "\n")
	if !strings.Contains(got, "MiB free in "+dir) || !strings.Contains(got, "8000 MiB memory available, 9000 MiB wanted") {
		t.Fatalf("problems: %q", r.Problems)
	}
	// The container's cgroup allows less than the host has.
	must(t, os.WriteFile(filepath.Join(h.probe.Cgroup, "memory.max"), []byte("1073741824\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(h.probe.Cgroup, "memory.current"), []byte("805306368\n"), 0o644))
	r = h.probe.Check(context.Background(), Limits{WorkDir: dir, MinMemMiB: 512})
	if r.MemFreeMiB != 256 || r.Fit() {
		t.Fatalf("with a 1 GiB cgroup holding 768 MiB: %d MiB, problems %q", r.MemFreeMiB, r.Problems)
	}
	must(t, os.WriteFile(filepath.Join(h.probe.Cgroup, "memory.max"), []byte("max\n"), 0o644))
	if r = h.probe.Check(context.Background(), Limits{WorkDir: dir, MinMemMiB: 512}); r.MemFreeMiB != 8000 || !r.Fit() {
		t.Fatalf("unlimited cgroup: %+v", r)
	}
	// A work folder not made yet is measured on the file system that will
	// hold it.
	if r = h.probe.Check(context.Background(), Limits{WorkDir: filepath.Join(dir, "not", "yet"), MinDiskMiB: 1 << 40}); r.Fit() ||
		!strings.Contains(r.Problems[0], "MiB free in "+dir+",") {
		t.Fatalf("a work folder not made yet: %q", r.Problems)
	}
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{EnvFlavour: "gpu", EnvCUDA: "12.8.1", EnvGPUCount: "2", EnvMinDisk: "100"}
	l, ok, err := FromEnv(func(k string) string { return env[k] }, "/w")
	if err != nil || !ok || l != (Limits{GPU: true, MinCUDA: "12.8.1", GPUCount: 2, MinDiskMiB: 100, MinMemMiB: DefaultMinMemMiB, WorkDir: "/w"}) {
		t.Fatalf("%+v %v %v", l, ok, err)
	}
	env[EnvCheck] = "off"
	if _, ok, err := FromEnv(func(k string) string { return env[k] }, "/w"); ok || err != nil {
		t.Fatalf("off: %v %v", ok, err)
	}
	for k, v := range map[string]string{EnvCheck: "maybe", EnvMinDisk: "-1", EnvMinMemory: "lots", EnvGPUCount: "65", EnvMinGPUMemory: "1e9"} {
		bad := map[string]string{k: v}
		if _, _, err := FromEnv(func(k string) string { return bad[k] }, "/w"); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}

// A job's needs are minimums, checked against a fit host's report.
func TestUnmet(t *testing.T) {
	r := Report{GPUs: []GPU{{Name: "NVIDIA L4", MemoryMiB: 23034}, {Name: "NVIDIA L4", MemoryMiB: 23034}}}
	if u := Unmet(r, 2, 20000); len(u) != 0 {
		t.Errorf("2 GPUs of 23034 MiB for a job wanting 2 of 20000: %q", u)
	}
	if u := Unmet(r, 1, 0); len(u) != 0 {
		t.Errorf("a job wanting 1 GPU on a 2-GPU host: %q", u)
	}
	u := Unmet(r, 4, 40000)
	if len(u) != 3 || u[0] != "2 GPUs, the job wants 4" || !strings.Contains(u[1], "GPU 0 (NVIDIA L4) has 23034 MiB, the job wants 40000 MiB") {
		t.Errorf("%q", u)
	}
}
