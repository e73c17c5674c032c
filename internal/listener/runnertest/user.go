// Package runnertest gives tests an unprivileged account to run the fake
// listener as.
package runnertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"syscall"
)

// PoolSize is how many test accounts may exist at once.
const PoolSize = 16

// Lease is a test account this test process holds alone: the runner kills
// every process of the account after each run, so two test processes (the
// runner's and the worker's packages under go test ./..., or two
// checkouts) must never share one.
type Lease struct {
	User *user.User
	f    *os.File
}

// LeaseUser takes the first free account of the pool wgr-test-runner-N: an
// exclusive flock on <tmp>/wgr-test-runner-N.lock marks it held (the
// kernel drops it when a test process dies, so a crash frees its account
// for the next one). It creates the account when missing. It needs root.
func LeaseUser() (*Lease, error) {
	if os.Getuid() != 0 {
		return nil, errors.New("not root: cannot create a user or switch to one")
	}
	for i := range PoolSize {
		name := fmt.Sprintf("wgr-test-runner-%d", i)
		f, err := os.OpenFile(filepath.Join(os.TempDir(), name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		u, err := ensureUser(name)
		if err != nil {
			f.Close()
			return nil, err
		}
		return &Lease{User: u, f: f}, nil
	}
	return nil, fmt.Errorf("all %d test accounts are held by other test processes", PoolSize)
}

func ensureUser(name string) (*user.User, error) {
	if u, err := user.Lookup(name); err == nil {
		return u, nil
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", "worker-github_runner tests (temporary)", name).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("useradd %s: %v %s", name, err, out)
	}
	return user.Lookup(name)
}

// Release deletes the account and frees its place in the pool.
func (l *Lease) Release() error {
	defer l.f.Close()
	if out, err := exec.Command("userdel", l.User.Username).CombinedOutput(); err != nil {
		return fmt.Errorf("userdel %s: %v %s", l.User.Username, err, out)
	}
	return nil
}
