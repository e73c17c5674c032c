package listener_test

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/listener/runnertest"
)

var (
	userOnce sync.Once
	userErr  error
	lease    *runnertest.Lease
)

// runnerUser is an unprivileged account of this test process's own (see
// runnertest.LeaseUser), deleted when the tests end. Tests that need it
// fail when not run as root: CI runs as root, and what they check cannot
// be checked otherwise.
func runnerUser(t *testing.T) *user.User {
	t.Helper()
	userOnce.Do(func() { lease, userErr = runnertest.LeaseUser() })
	if userErr != nil {
		t.Fatalf("runner account: %v", userErr)
	}
	return lease.User
}

func releaseUser() error {
	if lease == nil {
		return nil
	}
	return lease.Release()
}

// ownedRoot is fakeRoot in a folder the account can reach, owned by it as
// the image's runner folder is.
func ownedRoot(t *testing.T, u *user.User, behaviour map[string]any) string {
	t.Helper()
	base, err := os.MkdirTemp("", "wgr-runner-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "actions-runner")
	if err := os.Rename(fakeRoot(t, behaviour), root); err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, gid) })
	return root
}
