package fitness

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func (p Probe) checkDisk(l Limits, r *Report) {
	dir := existing(l.WorkDir)
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		r.problem("cannot read free disk space of %s: %v", dir, err)
		return
	}
	r.DiskFreeMiB = int64(st.Bavail) * int64(st.Bsize) >> 20
	if l.MinDiskMiB > 0 && r.DiskFreeMiB < l.MinDiskMiB {
		r.problem("%d MiB free in %s, %d MiB wanted", r.DiskFreeMiB, dir, l.MinDiskMiB)
	}
}

// existing is dir, or its nearest existing parent: the work folder of a
// runner that has not run yet lives on the file system holding that one.
func existing(dir string) string {
	if dir == "" {
		return "/"
	}
	dir = filepath.Clean(dir)
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

func (p Probe) checkMemory(l Limits, r *Report) {
	free, ok := p.memAvailable()
	if !ok {
		r.problem("cannot read available memory from %s", filepath.Join(p.Proc, "meminfo"))
		return
	}
	r.MemFreeMiB = free >> 20
	if l.MinMemMiB > 0 && r.MemFreeMiB < l.MinMemMiB {
		r.problem("%d MiB memory available, %d MiB wanted", r.MemFreeMiB, l.MinMemMiB)
	}
}

// memAvailable is the host's MemAvailable, lowered to what the
// container's cgroup (v2) still allows.
func (p Probe) memAvailable() (int64, bool) {
	avail, ok := meminfo(filepath.Join(p.Proc, "meminfo"), "MemAvailable:")
	if !ok {
		return 0, false
	}
	limit, lok := readInt(filepath.Join(p.Cgroup, "memory.max"))
	used, uok := readInt(filepath.Join(p.Cgroup, "memory.current"))
	if lok && uok {
		avail = min(avail, max(limit-used, 0))
	}
	return avail, true
}

// meminfo reads one "Key: N kB" line, in bytes.
func meminfo(path, key string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == key && fields[2] == "kB" {
			n, err := strconv.ParseInt(fields[1], 10, 64)
			return n << 10, err == nil && n >= 0
		}
	}
	return 0, false
}

// readInt reads a cgroup file holding a number ("max" is not one).
func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil && n >= 0
}
