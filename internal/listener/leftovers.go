package listener

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/retry"
)

// updateFinished is the file the runner's updater (_update.sh) writes in
// the runner's folder once it has swapped bin/ and externals/.
const updateFinished = "update.finished"

// killBound bounds the kill of an account's processes; groupBound, the
// wait for a finished updater to exit.
const (
	killBound  = 2 * time.Second
	groupBound = 2 * time.Second
	procPoll   = 20 * time.Millisecond
)

// afterRun cleans up after the listener exited with code. After a
// self-update (3, 4) it first waits for the detached updater, which runs
// in the listener's process group as the runner account, to finish: it is
// never killed, and when it does not finish within UpdateWait nothing is
// killed. Then it kills what the listener left in its process group and,
// when the listener ran as an unprivileged account, every process of that
// account: a job process that left the group (setsid) could otherwise
// read the next listener's JIT config from /proc.
func afterRun(ctx context.Context, s *session, code int, cred *syscall.Credential) {
	if code == exitUpdated || code == exitUpdatedRunOnce {
		if !waitUpdate(ctx, s.cfg) {
			return
		}
		waitGroupExit(s.pid, groupBound)
	}
	s.killGroup()
	if cred != nil {
		killAccount(s.cfg, cred.Uid)
	}
}

// waitUpdate waits, up to UpdateWait and while ctx lasts, for the updater
// to write update.finished, as run.sh does, and removes the file. It says
// whether the update finished.
func waitUpdate(ctx context.Context, cfg *Config) bool {
	flag := filepath.Join(cfg.Root, updateFinished)
	deadline := time.Now().Add(cfg.UpdateWait)
	for {
		if _, err := os.Stat(flag); err == nil {
			os.Remove(flag)
			cfg.Log.Info("the runner's update finished")
			return true
		}
		if time.Now().After(deadline) || !sleep(ctx, hookPoll) {
			cfg.Log.Warn("the runner's updater did not finish in time: not killing it (nor the runner account's processes); restarting the runner anyway, as run.sh does", "waited", cfg.UpdateWait)
			return false
		}
	}
}

// sleep waits d, or until ctx ends; it says whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	return retry.Sleep(ctx, nil, d) == nil
}

// waitGroupExit waits, up to bound, until no process of group pgid runs.
func waitGroupExit(pgid int, bound time.Duration) {
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); sleep(context.Background(), procPoll) {
		if !someProc(func(p proc) bool { return p.pgid == pgid }) {
			return
		}
	}
}

// sessions counts this process's listener sessions per account: the
// account's processes are killed only when no other session of the same
// account runs (rp_api_concurrency > 1 locally).
var sessions = struct {
	sync.Mutex
	n map[uint32]int
}{n: map[uint32]int{}}

// enterAccount counts a session of account uid until the returned func.
func enterAccount(uid uint32) func() {
	sessions.Lock()
	sessions.n[uid]++
	sessions.Unlock()
	return func() {
		sessions.Lock()
		sessions.n[uid]--
		sessions.Unlock()
	}
}

func othersOf(uid uint32) bool {
	sessions.Lock()
	defer sessions.Unlock()
	return sessions.n[uid] > 1
}

// killAccount SIGKILLs every process whose real or effective uid is uid
// (never uid 0, never this process), again until none is left, for at
// most killBound, and logs how many it killed.
func killAccount(cfg *Config, uid uint32) {
	if uid == 0 {
		return
	}
	if othersOf(uid) {
		cfg.Log.Warn("another runner session of this account is running: not killing the account's leftover processes", "uid", uid)
		return
	}
	killed := map[int]bool{}
	deadline := time.Now().Add(killBound)
	for {
		n := 0
		eachProc(func(p proc) {
			if p.owned(uid) {
				n++
				if kill(p.pid, uid) {
					killed[p.pid] = true
				}
			}
		})
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			cfg.Log.Error("processes of the runner account survived SIGKILL", "uid", uid, "left", n)
			break
		}
		sleep(context.Background(), procPoll)
	}
	if len(killed) > 0 {
		cfg.Log.Warn("killed the runner account's leftover processes", "uid", uid, "killed", len(killed))
	}
}

// kill SIGKILLs pid if it is still a process of uid. The process is held
// by a pidfd (os.FindProcess) while its owner is read again, so a pid
// reused meanwhile is never signalled.
func kill(pid int, uid uint32) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	defer p.Release()
	cur, err := readProc(pid)
	if err != nil || !cur.owned(uid) {
		return false
	}
	return p.Signal(syscall.SIGKILL) == nil
}

// proc is what killAccount and waitGroupExit need of a process.
type proc struct {
	pid, pgid  int
	zombie     bool
	ruid, euid uint32
}

// owned says whether p is a live process of account uid, other than this
// one.
func (p proc) owned(uid uint32) bool {
	return !p.zombie && p.pid != os.Getpid() && (p.ruid == uid || p.euid == uid)
}

// eachProc calls f with every process it can read.
func eachProc(f func(proc)) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := readProc(pid); err == nil {
			f(p)
		}
	}
}

// someProc says whether a live process matches.
func someProc(match func(proc) bool) bool {
	found := false
	eachProc(func(p proc) { found = found || !p.zombie && match(p) })
	return found
}

// readProc reads a process's state and group from /proc/PID/stat and its
// uids from /proc/PID/status.
func readProc(pid int) (proc, error) {
	p := proc{pid: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 3 {
		return p, errors.New("unexpected /proc stat")
	}
	p.zombie = f[0] == "Z" || f[0] == "X"
	p.pgid, _ = strconv.Atoi(f[2])
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			u := strings.Fields(rest)
			if len(u) < 2 {
				return p, errors.New("unexpected /proc status")
			}
			r, err1 := strconv.ParseUint(u[0], 10, 32)
			e, err2 := strconv.ParseUint(u[1], 10, 32)
			if err1 != nil || err2 != nil {
				return p, errors.New("unexpected /proc status")
			}
			p.ruid, p.euid = uint32(r), uint32(e)
			return p, nil
		}
	}
	return p, errors.New("no Uid in /proc status")
}
