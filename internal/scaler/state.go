package scaler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
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
	// Cancel: its RunPod job is to be cancelled (the runner was scaled
	// down); retried until RunPod says the job is over.
	Cancel bool `json:"cancel,omitempty"`
	// Unfit counts its RunPod jobs that failed on unfit workers.
	Unfit   int          `json:"unfit,omitempty"`
	checked time.Time    // last look at RunPod (not kept)
	goneAt  time.Time    // when this scaler saw it gone (not kept)
	jit     secret.Value // its JIT config, to submit again (not kept)
}

// live reports whether the runner may still hold a RunPod job: what
// max_runners bounds.
func (r *runner) live() bool { return !r.Ended }

// stateFile keeps every scale set's runners in one JSON file, rewritten
// atomically on each change. One scaler at a time uses it: it holds an
// exclusive lock on PATH.lock (flock) while it runs.
type stateFile struct {
	path string
	lock *os.File
	mu   sync.Mutex
	sets map[string][]runner
}

// Largest state file read: 100 scale sets of 1000 runners are ~30 MB.
const maxStateSize = 64 << 20

// openState locks the state file, reads it, and checks that it can be
// written (it writes it back): a scaler that could not record its
// runners would lose them at the next restart.
func openState(path string) (*stateFile, error) {
	if path == "" {
		return nil, errors.New("no state file: state_file must name a file")
	}
	lock, err := lockState(path)
	if err != nil {
		return nil, err
	}
	s := &stateFile{path: path, lock: lock}
	if s.sets, err = readState(path); err == nil {
		err = s.save("", nil)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// readState reads the state file; a missing file, or one holding null,
// is an empty state.
func readState(path string) (map[string][]runner, error) {
	sets := map[string][]runner{}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return sets, nil
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
	if err := json.Unmarshal(b, &sets); err != nil {
		return nil, fmt.Errorf("state file %s is not a scaler state file (%v): move it away to start afresh; "+
			"runners it listed are then left to their idle timeout", path, err)
	}
	if sets == nil { // the file held null
		sets = map[string][]runner{}
	}
	return sets, nil
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
	switch {
	case set == "": // openState's check: write back what is there
	case len(rs) == 0:
		delete(s.sets, set)
	default:
		s.sets[set] = rs
	}
	b, err := json.MarshalIndent(s.sets, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".scaler-state-*")
	if err != nil {
		return fmt.Errorf("write the state file %s: %w", s.path, err)
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

// close releases the state file's lock.
func (s *stateFile) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// CheckStateFile checks, without locking it, that the state file is a
// scaler state file (or absent) and that its directory is writable: what
// a scaler needs to start (--check).
func CheckStateFile(path string) error {
	if path == "" {
		return errors.New("no state file: state_file must name a file")
	}
	if _, err := readState(path); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".scaler-check-*")
	if err != nil {
		return fmt.Errorf("state file %s: its directory is not writable: %w", path, err)
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}

// String shows a runner without its JIT config (fmt's %v and %+v, which
// would print the unexported field's secret).
func (r runner) String() string {
	return fmt.Sprintf("runner %s (id %d, RunPod job %q, status %q, busy %v, done %v, ended %v, gone %v, cancel %v)",
		r.Name, r.ID, r.Job, r.Status, r.Busy, !r.Done.IsZero(), r.Ended, r.Gone, r.Cancel)
}

// LogValue is String for slog.
func (r runner) LogValue() slog.Value { return slog.StringValue(r.String()) }
