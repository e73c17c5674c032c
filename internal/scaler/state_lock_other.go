//go:build !unix

package scaler

import (
	"errors"
	"os"
)

// lockState: the state file's lock needs flock, a Unix call; the scaler
// runs on Linux (its release binaries) and other Unix systems.
func lockState(string) (*os.File, error) {
	return nil, errors.New("the scaler runs on Unix systems only (it locks its state file with flock)")
}
