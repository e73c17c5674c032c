package listener

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// hooks is the runner's job-started hook script: it leaves a marker file
// the supervisor watches, a second signal of the job's start besides the
// listener's output.
//
// The runner runs it as a job step ("Set up runner";
// src/Runner.Worker/JobExtension.cs, JobHookProvider.cs), as the runner
// account: a failing or missing hook fails the job. So it never fails,
// and the job cannot remove it: its folder and the script belong to the
// worker (in the sticky temporary folder, the runner account cannot
// delete them); only the marker's folder is the runner account's.
//
// Whatever the hook can write, the job (the same account) can write too,
// so the marker says nothing the job could lie about to its advantage: a
// job that runs already may as well say it started. The job's end is
// learnt from the listener's output alone ("completed with result"): the
// worker made that pipe as root, so the runner account cannot reopen it
// through /proc/<pid>/fd, and the job's steps do not inherit it (the
// listener gives Runner.Worker pipes of its own). There is no
// job-completed hook: its marker would let a job claim an end it never
// reached (runner_removed "by GitHub" for a runner left registered).
type hooks struct {
	dir, markerDir, started string
}

func newHooks(cred *syscall.Credential) (*hooks, error) {
	dir, err := os.MkdirTemp("", "wgr-hooks-")
	if err != nil {
		return nil, err
	}
	h := &hooks{dir: dir, markerDir: filepath.Join(dir, "markers"), started: filepath.Join(dir, "job-started.sh")}
	if err := os.Mkdir(h.markerDir, 0o755); err != nil {
		return nil, err
	}
	body := fmt.Sprintf("#!/bin/sh\n# worker-github_runner: tells the worker the job started. It never fails: a failing hook fails the job.\n: > '%s' 2>/dev/null || :\n",
		filepath.Join(h.markerDir, "started"))
	if err := os.WriteFile(h.started, []byte(body), 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(h.markerDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// jobStarted says whether the job-started hook has run.
func (h *hooks) jobStarted() bool {
	_, err := os.Stat(filepath.Join(h.markerDir, "started"))
	return err == nil
}
