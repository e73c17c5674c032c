package jobhandler

import (
	"regexp"
	"strings"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// MaxErrorLine caps an error message: it reaches logs, RunPod's job
// status and the workflow that started the job.
const MaxErrorLine = 4096

// errLine is err's message with every known secret redacted, capped.
func errLine(r *secret.Redactor, err error) string {
	return secret.CapLine(r.Redact(err.Error()), MaxErrorLine)
}

// secretVars are variables whose values are secrets whatever their
// length; variables whose names look secret (secretVarName) count when
// their values are long enough to be credentials.
var (
	secretVars    = []string{jobapi.EnvPAT, "GITHUB_TOKEN", "GH_TOKEN", jobapi.EnvAppPrivateKey, "RUNPOD_AI_API_KEY", "RUNPOD_API_KEY"}
	secretVarName = regexp.MustCompile(`(?i)(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY|ACCESS_KEY|CREDENTIAL|(^|_)PAT$)`)
)

// secrets is a redactor holding every secret the worker has: the RunPod
// API key, the endpoint's GitHub credentials (also when a job brings its
// own), other variables whose names say they are secrets, and what
// RUNNER_ENV_DENY names. A job can print them (a root job can read them
// from the worker's /proc/<pid>/environ); they never reach the stream.
func (h *Handler) secrets() *secret.Redactor {
	r := &secret.Redactor{}
	for _, k := range secretVars {
		r.Add(secret.New(h.getenv(k)))
	}
	deny := splitComma(h.getenv(EnvDeny))
	for _, kv := range h.environ() {
		k, v, _ := strings.Cut(kv, "=")
		if matchVar(k, deny) || (secretVarName.MatchString(k) && len(v) >= 12) {
			r.Add(secret.New(v))
		}
	}
	return r
}

// matchVar matches a variable name against NAME and NAME_* patterns.
func matchVar(name string, pats []string) bool {
	for _, p := range pats {
		if prefix, ok := strings.CutSuffix(p, "*"); (ok && strings.HasPrefix(name, prefix)) || p == name {
			return true
		}
	}
	return false
}
