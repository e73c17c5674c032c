package runpod

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

func echoHandle(ctx context.Context, job *Job, u Updater) (any, error) {
	var in map[string]any
	if err := json.Unmarshal(job.Input, &in); err == nil {
		if s, ok := in["sleep"].(float64); ok {
			u.Progress(map[string]any{"sleeping": s})
			select {
			case <-time.After(time.Duration(s * float64(time.Second))):
			case <-ctx.Done():
				return nil, errors.New("job cancelled: " + context.Cause(ctx).Error())
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
