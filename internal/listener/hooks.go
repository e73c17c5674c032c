package listener

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// hooks are the runner's job-started and job-completed hook scripts: they
// leave marker files the supervisor watches, a second signal besides the
// listener's output.
type hooks struct {
	dir, started, completed string
}

func newHooks(cred *syscall.Credential) (*hooks, error) {
	dir, err := os.MkdirTemp("", "wgr-hooks-")
	if err != nil {
		return nil, err
	}
	h := &hooks{dir: dir, started: filepath.Join(dir, "job-started.sh"), completed: filepath.Join(dir, "job-completed.sh")}
	for script, marker := range map[string]string{h.started: "started", h.completed: "completed"} {
		body := fmt.Sprintf("#!/bin/sh\n# worker-github_runner: tells the worker the job %s\n: > '%s'\n", marker, filepath.Join(dir, marker))
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// markers says which hooks have run.
func (h *hooks) markers() (started, completed bool) {
	_, err := os.Stat(filepath.Join(h.dir, "started"))
	started = err == nil
	_, err = os.Stat(filepath.Join(h.dir, "completed"))
	return started, err == nil
}
