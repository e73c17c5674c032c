package scaler

import (
	"context"
	"sync"

	"github.com/actions/scaleset/listener"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// capacityFrom is a scale set's capacity given its endpoint's /health
// workers. It is max_runners unless RunPod reports throttled workers
// (workers it wants to start but has no machine of the endpoint's GPU
// types for): then it is the workers that can take a job now or soon
// (idle, ready, running, initializing) plus one, so that one RunPod job
// waits in RunPod's queue and keeps asking for a worker; at least 1, at
// most max_runners. Jobs beyond it wait on GitHub's side, not as RunPod
// jobs holding registered runners.
func capacityFrom(maxRunners int, w jobapi.HealthWorkers) int {
	if w.Throttled == 0 {
		return maxRunners
	}
	return min(maxRunners, w.Idle+w.Ready+w.Running+w.Initializing+1)
}

// capacity is a scale set's capacity and the listener it is told to.
type capacity struct {
	mu     sync.Mutex
	n      int // 0: not known yet (max_runners)
	lis    *listener.Listener
	failed bool // the last /health failed (logged once)
}

// setListener records the listener of the current session (nil: none)
// and sets the target accordingly: a scale set starts runners only while
// it holds the session. A standby scaler (GitHub answered 409: another
// one holds it) starts none, min_runners included, so that two scalers
// never exceed max_runners together.
func (s *set) setListener(l *listener.Listener) {
	s.capa.mu.Lock()
	s.capa.lis = l
	s.capa.mu.Unlock()
	s.mu.Lock()
	s.target = s.targetLocked()
	s.mu.Unlock()
	s.poke()
}

// listening reports whether the scale set holds its message session.
func (s *set) listening() bool {
	s.capa.mu.Lock()
	defer s.capa.mu.Unlock()
	return s.capa.lis != nil
}

// updateCapacity reads the endpoint's /health and applies capacityFrom:
// to the target and, through SetMaxRunners, to the X-ScaleSetMaxCapacity
// GitHub gets. When /health fails, the capacity is max_runners (a
// failing /health stops no work).
func (s *set) updateCapacity(ctx context.Context) {
	if !s.cfg.HealthCapacity {
		return
	}
	n, w := s.cfg.MaxRunners, jobapi.HealthWorkers{}
	h, err := s.rp.Health(ctx)
	s.capa.mu.Lock()
	failed := s.capa.failed
	s.capa.failed = err != nil
	s.capa.mu.Unlock()
	switch {
	case err != nil && ctx.Err() != nil:
		return
	case err != nil:
		s.apiError("runpod", "health")
		if !failed {
			s.log.Warn("cannot read the endpoint's /health: the capacity is max_runners until it answers", errAttr(err))
		}
	default:
		w = h.Workers
		n = capacityFrom(s.cfg.MaxRunners, w)
	}
	s.capa.mu.Lock()
	old, lis := s.capa.n, s.capa.lis
	s.capa.n = n
	s.capa.mu.Unlock()
	s.m.set("runpod_scaler_capacity", float64(n), "scale_set", s.cfg.Name)
	if old == n {
		return
	}
	if lis != nil {
		lis.SetMaxRunners(n)
	}
	s.mu.Lock()
	s.target = s.targetLocked()
	s.mu.Unlock()
	if n < s.cfg.MaxRunners {
		s.log.Info("capacity capped: RunPod reports throttled workers (no machine of the endpoint's GPU types free)",
			"capacity", n, "max_runners", s.cfg.MaxRunners, "throttled", w.Throttled, "idle", w.Idle, "ready", w.Ready,
			"running", w.Running, "initializing", w.Initializing)
	} else if old != 0 {
		s.log.Info("capacity back to max_runners", "capacity", n)
	}
}

// capacityNow is the capacity to tell a new listener.
func (s *set) capacityNow() int {
	s.capa.mu.Lock()
	defer s.capa.mu.Unlock()
	if s.capa.n == 0 {
		return s.cfg.MaxRunners
	}
	return s.capa.n
}

// targetLocked is min_runners + the jobs assigned, at most the capacity;
// 0 while the scale set does not hold its message session. Call with
// s.mu held.
func (s *set) targetLocked() int {
	if !s.listening() {
		return 0
	}
	return min(s.capacityNow(), s.cfg.MinRunners+s.assigned)
}
