// Package jobapi is the contract between the dispatcher and the worker:
// the job input as it travels (Input, and the endpoint variable that backs
// each field), and RunPod's endpoint API (/run, /status/{id}, /stream/{id},
// /cancel/{id}, /health: RunRequest, Job, Status), which both the local
// API server (internal/runpod) and the client (internal/dispatch) speak.
// It uses the standard library only: the worker binary links it.
package jobapi

import (
	"encoding/json"
	"time"
)

// Input is a worker-github_runner job's input as sent. Fields that accept
// several JSON shapes (labels: a list or a comma-separated string;
// timeouts: seconds or a duration; App ids: a number or a string) are
// kept raw for the worker's parser. A field left out (nil) falls back to
// its endpoint variable (Fields).
type Input struct {
	GitHubPAT    *string         `json:"github_pat,omitempty"`
	GitHubOrg    *string         `json:"github_org,omitempty"`
	Labels       json.RawMessage `json:"labels,omitempty"`
	RunnerGroup  *string         `json:"runner_group,omitempty"`
	GitHubAPIURL *string         `json:"github_api_url,omitempty"`
	IdleTimeout  json.RawMessage `json:"idle_timeout,omitempty"`
	JobTimeout   json.RawMessage `json:"job_timeout,omitempty"`
	Mode         *string         `json:"mode,omitempty"`
	RunnerUser   *string         `json:"runner_user,omitempty"`
	SelfTest     bool            `json:"selftest,omitempty"`
	AppID        json.RawMessage `json:"github_app_id,omitempty"`
	AppInstall   json.RawMessage `json:"github_app_installation_id,omitempty"`
	AppKey       *string         `json:"github_app_private_key,omitempty"`
}

// The endpoint variables behind the input fields.
const (
	EnvPAT           = "GITHUB_PAT"
	EnvOrg           = "GITHUB_ORG"
	EnvLabels        = "RUNNER_LABELS"
	EnvRunnerGroup   = "RUNNER_GROUP"
	EnvAPIURL        = "GITHUB_API_URL"
	EnvIdleTimeout   = "RUNNER_IDLE_TIMEOUT"
	EnvJobTimeout    = "RUNNER_JOB_TIMEOUT"
	EnvMode          = "RUNNER_MODE"
	EnvRunnerUser    = "RUNNER_USER"
	EnvAppID         = "GITHUB_APP_ID"
	EnvAppInstall    = "GITHUB_APP_INSTALLATION_ID"
	EnvAppPrivateKey = "GITHUB_APP_PRIVATE_KEY"
)

// Field is an input field and the endpoint variable that backs it ("":
// none).
type Field struct{ Name, Env string }

// Fields lists every field of Input, in its order (a test keeps them in
// step).
var Fields = []Field{
	{"github_pat", EnvPAT}, {"github_org", EnvOrg}, {"labels", EnvLabels},
	{"runner_group", EnvRunnerGroup}, {"github_api_url", EnvAPIURL}, {"idle_timeout", EnvIdleTimeout},
	{"job_timeout", EnvJobTimeout}, {"mode", EnvMode}, {"runner_user", EnvRunnerUser}, {"selftest", ""},
	{"github_app_id", EnvAppID}, {"github_app_installation_id", EnvAppInstall}, {"github_app_private_key", EnvAppPrivateKey},
}

// FieldNames are the input's field names, in order.
func FieldNames() []string {
	names := make([]string, len(Fields))
	for i, f := range Fields {
		names[i] = f.Name
	}
	return names
}

// String is s as an optional field: nil when empty (the endpoint's
// setting applies).
func String(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Seconds is d as a number of seconds; nil when d is not positive.
func Seconds(d time.Duration) json.RawMessage {
	if d <= 0 {
		return nil
	}
	b, _ := json.Marshal(d.Seconds())
	return b
}

// List is a list of strings as a field (null for a nil list).
func List(l []string) json.RawMessage {
	b, _ := json.Marshal(l)
	return b
}
