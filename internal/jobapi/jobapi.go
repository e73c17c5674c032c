// Package jobapi is the contract between the dispatcher and the worker:
// the job input as it travels (Input, and the endpoint variable that backs
// each field), and RunPod's endpoint API (/run, /status/{id}, /stream/{id},
// /cancel/{id}, /health: RunRequest, Job, Status), which both the local
// API server (internal/runpod) and the client (internal/dispatch) speak.
// It uses the standard library only: the worker binary links it.
package jobapi

import (
	"encoding/json"
	"strconv"
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
	// JITConfig is the encoded config GitHub's generate-jitconfig returns
	// (a runner minted on the GitHub side); with it the worker needs no
	// GitHub credential. RunnerName is that runner's name, for logs.
	JITConfig  *string `json:"jitconfig,omitempty"`
	RunnerName *string `json:"runner_name,omitempty"`
	// GPUCount and MinGPUMemory are what the job needs of the host (a
	// whole number, or one as a string): the fitness check fails the job
	// on a host with fewer GPUs, or a GPU with less memory (MiB), before
	// a runner is registered, in the unfit form (ErrorReport).
	GPUCount     json.RawMessage `json:"gpu_count,omitempty"`
	MinGPUMemory json.RawMessage `json:"min_gpu_memory_mb,omitempty"`
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
	EnvGPUCount      = "FITNESS_GPU_COUNT"         // fitness.EnvGPUCount
	EnvMinGPUMemory  = "FITNESS_MIN_GPU_MEMORY_MB" // fitness.EnvMinGPUMemory
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
	{"jitconfig", ""}, {"runner_name", ""}, // a JIT config is single-use: never an endpoint setting
	{"gpu_count", EnvGPUCount}, {"min_gpu_memory_mb", EnvMinGPUMemory},
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

// Whole is n as a whole-number field; nil when n is not positive (the
// endpoint's setting applies).
func Whole(n int64) json.RawMessage {
	if n <= 0 {
		return nil
	}
	return json.RawMessage(strconv.FormatInt(n, 10))
}

// List is a list of strings as a field (null for a nil list).
func List(l []string) json.RawMessage {
	b, _ := json.Marshal(l)
	return b
}
