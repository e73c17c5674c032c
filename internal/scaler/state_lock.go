//go:build unix

package scaler

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockState takes an exclusive lock on PATH.lock, held until the file is
// closed: a second scaler on the same state file fails at once instead of
// overwriting the first one's runners.
func lockState(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state file %s: cannot create its lock file: %w", path, err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, fmt.Errorf("state file %s is in use by another scaler (%s.lock is locked): "+
			"each scaler needs a state file of its own", path, path)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state file %s: cannot lock %s.lock: %w", path, path, err)
	}
	return f, nil
}
