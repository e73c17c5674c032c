package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Job is one unit of work from the platform.
type Job struct {
	ID string
	// Input is the job's "input" as sent (any JSON value).
	Input json.RawMessage
	// Fields holds every top-level field, unknown ones included.
	Fields map[string]json.RawMessage
}

// Handler runs one job. The context ends when the job is cancelled, the
// job loop shuts down, or the platform's time runs out; a handler must return
// soon after. The returned value is posted as the job's output; an error is
// posted as the job's error (as a string).
type Handler interface {
	Handle(ctx context.Context, job *Job, u Updater) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job *Job, u Updater) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, job *Job, u Updater) (any, error) {
	return f(ctx, job, u)
}

// Updater sends progress and stream chunks while a job runs. Calls never
// block: they are queued in order and dropped once the final result is
// posted, so a late progress update can never leave a finished job
// IN_PROGRESS. Stream chunks are posted in batches (each post's output is
// the list of its chunks); chunks the platform cannot take in time are
// counted, and the count is streamed and logged.
type Updater interface {
	Progress(v any)
	Stream(chunk any)
}

// malformedJob is a job the platform sent without the fields a job needs.
type malformedJob struct {
	id     string // may be empty
	reason string
}

// parseTake interprets a job-take response body: nil jobs for "no job"
// (empty, not JSON, JSON null), one job for an object, several for an array.
func parseTake(body []byte) (jobs []*Job, bad []malformedJob) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || !json.Valid(body) {
		return nil, nil
	}
	switch body[0] {
	case '{':
		j, m := parseJob(body)
		if m != nil {
			return nil, []malformedJob{*m}
		}
		return []*Job{j}, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, nil
		}
		for _, it := range items {
			j, m := parseJob(it)
			if m != nil {
				bad = append(bad, *m)
				continue
			}
			jobs = append(jobs, j)
		}
		return jobs, bad
	}
	return nil, nil
}

func parseJob(b []byte) (*Job, *malformedJob) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, &malformedJob{reason: "job is not a JSON object"}
	}
	var id string
	if raw, ok := fields["id"]; ok {
		if err := json.Unmarshal(raw, &id); err != nil {
			return nil, &malformedJob{reason: "job id is not a string"}
		}
	}
	if id == "" {
		return nil, &malformedJob{reason: "job has no id"}
	}
	input, ok := fields["input"]
	if !ok || bytes.Equal(bytes.TrimSpace(input), []byte("null")) {
		return nil, &malformedJob{id: id, reason: "job has no input"}
	}
	return &Job{ID: id, Input: input, Fields: fields}, nil
}

// DecodeInput unmarshals the job's input into v, with a clear error when the
// input is not the object the handler expects.
func (j *Job) DecodeInput(v any) error {
	dec := json.NewDecoder(bytes.NewReader(j.Input))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return fmt.Errorf("input must be a JSON object, not %s", te.Value)
		}
		return fmt.Errorf("invalid input: %w", err)
	}
	return nil
}
