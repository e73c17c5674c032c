package jobhandler

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// MaxErrorLine caps an error message: it reaches logs, RunPod's job
// status and the workflow that started the job.
const MaxErrorLine = 4096

// placeholderRE is RunPod's reference to a secret, {{ RUNPOD_SECRET_name }}:
// RunPod passes it through as text when the secret does not exist.
var placeholderRE = regexp.MustCompile(`^\{\{\s*RUNPOD_SECRET_([A-Za-z0-9_.-]{1,100})\s*\}\}$`)

// placeholder is the secret name v refers to, if v is a RunPod secret
// placeholder.
func placeholder(v string) (string, bool) {
	m := placeholderRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// checkPlaceholder fails when the endpoint's variable k still holds a
// RunPod secret placeholder: the secret was never created, and GitHub
// would answer the text with a 401.
func checkPlaceholder(k string, getenv func(string) string) error {
	if name, ok := placeholder(getenv(k)); ok {
		return fmt.Errorf("the endpoint's %s is the RunPod secret placeholder {{ RUNPOD_SECRET_%s }}: create the secret %s", k, name, name)
	}
	return nil
}

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
		if _, ok := placeholder(h.getenv(k)); !ok {
			r.Add(secret.New(h.getenv(k)))
		}
	}
	deny := splitComma(h.getenv(EnvDeny))
	for _, kv := range h.environ() {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := placeholder(v); ok {
			continue // not a secret: the text of a reference to one
		}
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
