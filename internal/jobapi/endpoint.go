package jobapi

import (
	"encoding/json"
	"time"
)

// Status is a RunPod job's status.
type Status string

// The statuses RunPod's endpoint API reports.
const (
	InQueue    Status = "IN_QUEUE"
	InProgress Status = "IN_PROGRESS"
	Completed  Status = "COMPLETED"
	Failed     Status = "FAILED"
	Cancelled  Status = "CANCELLED"
	TimedOut   Status = "TIMED_OUT"
)

// Terminal reports whether a job with this status has ended.
func (s Status) Terminal() bool {
	switch s {
	case Completed, Failed, Cancelled, TimedOut:
		return true
	}
	return false
}

// RunRequest is the body of POST /run and /runsync.
type RunRequest struct {
	Input  json.RawMessage `json:"input"`
	Policy *Policy         `json:"policy,omitempty"`
}

// Policy bounds a job's run (executionTimeout) and its wait in the queue
// (ttl), in milliseconds.
type Policy struct {
	ExecutionTimeout int64 `json:"executionTimeout,omitempty"`
	TTL              int64 `json:"ttl,omitempty"`
}

// NewPolicy is the policy for these bounds; nil when neither is set.
func NewPolicy(execution, ttl time.Duration) *Policy {
	p := Policy{ExecutionTimeout: max(execution, 0).Milliseconds(), TTL: max(ttl, 0).Milliseconds()}
	if p == (Policy{}) {
		return nil
	}
	return &p
}

// Job is a job as the endpoint API reports it: the answer to /run,
// /status/{id} and /cancel/{id}. Times are in milliseconds.
type Job struct {
	ID            string `json:"id"`
	Status        Status `json:"status"`
	DelayTime     *int64 `json:"delayTime,omitempty"`
	ExecutionTime *int64 `json:"executionTime,omitempty"`
	WorkerID      string `json:"workerId,omitempty"`
	Output        any    `json:"output,omitempty"`
	Error         string `json:"error,omitempty"`
}

// StreamAnswer is the answer to /stream/{id}: the chunks streamed since
// the last call.
type StreamAnswer struct {
	ID     string        `json:"id"`
	Status Status        `json:"status"`
	Stream []StreamChunk `json:"stream"`
}

// StreamChunk is one streamed value.
type StreamChunk struct {
	Output any `json:"output"`
}

// Health is the answer to /health.
type Health struct {
	Jobs    HealthJobs    `json:"jobs"`
	Workers HealthWorkers `json:"workers"`
}

// HealthJobs counts the endpoint's jobs by status.
type HealthJobs struct {
	Completed  int `json:"completed"`
	Failed     int `json:"failed"`
	InProgress int `json:"inProgress"`
	InQueue    int `json:"inQueue"`
	Retried    int `json:"retried"`
	Cancelled  int `json:"cancelled"`
}

// Count adds one job in status to the counts (statuses /health does not
// count, such as TIMED_OUT, are left out, as RunPod leaves them).
func (h *HealthJobs) Count(status Status) {
	switch status {
	case Completed:
		h.Completed++
	case Failed:
		h.Failed++
	case InProgress:
		h.InProgress++
	case InQueue:
		h.InQueue++
	case Cancelled:
		h.Cancelled++
	}
}

// HealthWorkers counts the endpoint's workers by state, as RunPod
// reports them.
type HealthWorkers struct {
	Idle         int `json:"idle"`         // up, waiting for a job
	Initializing int `json:"initializing"` // starting: pulling the image, booting
	Ready        int `json:"ready"`        // started, not yet running a job
	Running      int `json:"running"`      // running a job
	// Throttled: ready, but its host cannot run it for now (RunPod's
	// "host machine resource constraints"): no capacity.
	Throttled int `json:"throttled"`
	// Unhealthy: crashed or failed to start (a cold start over 7 min, a
	// bad image); RunPod retries it.
	Unhealthy int `json:"unhealthy"`
}

// ErrorAnswer is the body of a refused request.
type ErrorAnswer struct {
	Error string `json:"error"`
}
