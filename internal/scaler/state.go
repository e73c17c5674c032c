package scaler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// runner is one runner the scaler started: GitHub's side (name, id) and
// RunPod's (its job). It is what the state file keeps.
type runner struct {
	Name    string    `json:"name"`
	ID      int       `json:"id"`                   // GitHub's runner id
	Job     string    `json:"runpod_job,omitempty"` // "" until /run answered, or when its answer was lost
	Created time.Time `json:"created"`
	Busy    bool      `json:"busy,omitempty"`   // JobStarted seen
	Done    time.Time `json:"done,omitzero"`    // JobCompleted seen, or found finished
	Ended   bool      `json:"ended,omitempty"`  // its RunPod job is over (or never was)
	Gone    bool      `json:"gone,omitempty"`   // GitHub no longer lists it
	Unsure  bool      `json:"unsure,omitempty"` // /run's answer was lost
	Status  string    `json:"runpod_status,omitempty"`
	// Unfit counts its RunPod jobs that failed on unfit workers.
	Unfit   int          `json:"unfit,omitempty"`
	checked time.Time    // last look at RunPod (not kept)
	jit     secret.Value // its JIT config, to submit again (not kept)
}

// live reports whether the runner may still hold a RunPod job: what
// max_runners bounds.
func (r *runner) live() bool { return !r.Ended }

// stateFile keeps every scale set's runners in one JSON file, rewritten
// atomically on each change.
type stateFile struct {
	path string
	mu   sync.Mutex
	sets map[string][]runner
}

// Largest state file read: 100 scale sets of 1000 runners are ~30 MB.
const maxStateSize = 64 << 20

func openState(path string) (*stateFile, error) {
	s := &stateFile{path: path, sets: map[string][]runner{}}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("state file %s: over %d MiB, not a scaler state file", path, maxStateSize>>20)
	}
	if err := json.Unmarshal(b, &s.sets); err != nil {
		return nil, fmt.Errorf("state file %s is not a scaler state file (%v): move it away to start afresh; "+
			"runners it listed are then left to their idle timeout", path, err)
	}
	return s, nil
}

// load returns a scale set's runners.
func (s *stateFile) load(set string) []runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]runner(nil), s.sets[set]...)
}

// save replaces a scale set's runners and writes the file.
func (s *stateFile) save(set string, rs []runner) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(rs) == 0 {
		delete(s.sets, set)
	} else {
		s.sets[set] = rs
	}
	b, err := json.MarshalIndent(s.sets, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".scaler-state-*")
	if err != nil {
		return fmt.Errorf("write the state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("write the state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("write the state file: %w", err)
	}
	return nil
}
