package runpod

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/retry"
)

func echoHandle(ctx context.Context, job *Job, u Updater) (any, error) {
	var in map[string]any
	if err := json.Unmarshal(job.Input, &in); err == nil {
		if s, ok := in["sleep"].(float64); ok {
			u.Progress(map[string]any{"sleeping": s})
			if cause := retry.Sleep(ctx, nil, time.Duration(s*float64(time.Second))); cause != nil {
				return nil, errors.New("job cancelled: " + cause.Error())
			}
		}
		if msg, ok := in["fail"].(string); ok {
			return nil, errors.New(msg)
		}
	}
	var v any
	if err := json.Unmarshal(job.Input, &v); err != nil {
		return nil, err
	}
	return v, nil
}
