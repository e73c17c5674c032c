// Package worker is the RunPod job handler of worker-github_runner: for each
// job it registers an ephemeral GitHub Actions runner, lets it run exactly
// one workflow job, guarantees the runner is removed afterwards, and
// returns a structured result.
package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Input is a job's input after defaults from the environment.
type Input struct {
	PAT         secret.Value
	App         *github.App // instead of a PAT
	Scope       github.Scope
	Labels      []string
	RunnerGroup string
	APIURL      string
	IdleTimeout time.Duration
	JobTimeout  time.Duration
	Mode        string // "jit" or "token"
	RunnerUser  string // "runner" or "root"
	// SelfTest checks the image and registers nothing (RunPod Hub tests).
	SelfTest bool
}

// Defaults when neither the input nor the environment says.
const (
	DefaultIdleTimeout = 5 * time.Minute
	DefaultJobTimeout  = 6 * time.Hour
)

// rawInput is the job input as sent. Each field also has an environment
// variable (the endpoint's settings); the input wins, as in the seed.
type rawInput struct {
	GitHubPAT    *string         `json:"github_pat"`
	GitHubOrg    *string         `json:"github_org"`
	Labels       json.RawMessage `json:"labels"`
	RunnerGroup  *string         `json:"runner_group"`
	GitHubAPIURL *string         `json:"github_api_url"`
	IdleTimeout  json.RawMessage `json:"idle_timeout"`
	JobTimeout   json.RawMessage `json:"job_timeout"`
	Mode         *string         `json:"mode"`
	RunnerUser   *string         `json:"runner_user"`
	SelfTest     bool            `json:"selftest"`
	AppID        json.RawMessage `json:"github_app_id"`
	AppInstall   json.RawMessage `json:"github_app_installation_id"`
	AppKey       *string         `json:"github_app_private_key"`
}

// Fields lists the input fields and their environment variables.
var Fields = [][2]string{
	{"github_pat", "GITHUB_PAT"}, {"github_org", "GITHUB_ORG"}, {"labels", "RUNNER_LABELS"},
	{"runner_group", "RUNNER_GROUP"}, {"github_api_url", "GITHUB_API_URL"}, {"idle_timeout", "RUNNER_IDLE_TIMEOUT"},
	{"job_timeout", "RUNNER_JOB_TIMEOUT"}, {"mode", "RUNNER_MODE"}, {"runner_user", "RUNNER_USER"}, {"selftest", ""},
	{"github_app_id", "GITHUB_APP_ID"}, {"github_app_installation_id", "GITHUB_APP_INSTALLATION_ID"}, {"github_app_private_key", "GITHUB_APP_PRIVATE_KEY"},
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)

// ParseInput validates a job's input (a JSON object) with environment
// fallbacks. All problems are reported together.
func ParseInput(raw []byte, getenv func(string) string) (*Input, error) {
	var in rawInput
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("input must be a JSON object like {\"github_org\": \"my-org\"}")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var names []string
		for _, f := range Fields {
			names = append(names, f[0])
		}
		return nil, fmt.Errorf("invalid input: %v (known fields: %s)", cleanJSONError(err), strings.Join(names, ", "))
	}
	if in.SelfTest {
		return &Input{SelfTest: true}, nil
	}
	var errs []string
	str := func(v *string, env string) string {
		if v != nil {
			return strings.TrimSpace(*v)
		}
		return strings.TrimSpace(getenv(env))
	}
	out := &Input{
		PAT:         secret.New(str(in.GitHubPAT, "GITHUB_PAT")),
		RunnerGroup: str(in.RunnerGroup, "RUNNER_GROUP"),
		APIURL:      str(in.GitHubAPIURL, "GITHUB_API_URL"),
		Mode:        strings.ToLower(str(in.Mode, "RUNNER_MODE")),
		RunnerUser:  str(in.RunnerUser, "RUNNER_USER"),
	}
	app, err := parseApp(in, getenv)
	if err != nil {
		errs = append(errs, err.Error())
	}
	out.App = app
	if out.PAT.Empty() && app == nil {
		errs = append(errs, "github_pat is missing: give it in the input or set GITHUB_PAT on the endpoint (or GitHub App credentials: github_app_id, github_app_installation_id, github_app_private_key)")
	} else if strings.ContainsAny(out.PAT.Reveal(), " \t\r\n") {
		errs = append(errs, "github_pat contains white space")
	}
	scope, err := github.ParseScope(str(in.GitHubOrg, "GITHUB_ORG"))
	if err != nil {
		errs = append(errs, err.Error())
	}
	out.Scope = scope
	labels, err := parseLabels(in.Labels, getenv("RUNNER_LABELS"))
	if err != nil {
		errs = append(errs, err.Error())
	}
	out.Labels = labels
	if len(out.RunnerGroup) > 100 || strings.ContainsAny(out.RunnerGroup, "\r\n\x00") {
		errs = append(errs, "runner_group must be a runner group's name")
	}
	switch out.Mode {
	case "", "jit":
		out.Mode = "jit"
	case "token":
	default:
		errs = append(errs, fmt.Sprintf("mode %q must be jit (default) or token", out.Mode))
	}
	switch out.RunnerUser {
	case "":
		out.RunnerUser = "runner"
	case "runner", "root":
	default:
		errs = append(errs, fmt.Sprintf("runner_user %q must be runner (default) or root", out.RunnerUser))
	}
	if out.IdleTimeout, err = parseDuration("idle_timeout", in.IdleTimeout, getenv("RUNNER_IDLE_TIMEOUT"), DefaultIdleTimeout); err != nil {
		errs = append(errs, err.Error())
	}
	if out.JobTimeout, err = parseDuration("job_timeout", in.JobTimeout, getenv("RUNNER_JOB_TIMEOUT"), DefaultJobTimeout); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return nil, errors.New("invalid input: " + strings.Join(errs, "; "))
	}
	return out, nil
}

// parseApp reads GitHub App credentials; all three or none.
func parseApp(in rawInput, getenv func(string) string) (*github.App, error) {
	num := func(raw json.RawMessage, env string) (string, error) {
		if len(raw) > 0 && string(raw) != "null" {
			var n json.Number
			if err := json.Unmarshal(raw, &n); err != nil {
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return "", errors.New("must be a number")
				}
				return strings.TrimSpace(s), nil
			}
			return n.String(), nil
		}
		return strings.TrimSpace(getenv(env)), nil
	}
	id, err1 := num(in.AppID, "GITHUB_APP_ID")
	inst, err2 := num(in.AppInstall, "GITHUB_APP_INSTALLATION_ID")
	key := getenv("GITHUB_APP_PRIVATE_KEY")
	if in.AppKey != nil {
		key = *in.AppKey
	}
	if err1 != nil || err2 != nil {
		return nil, errors.New("github_app_id and github_app_installation_id must be numbers")
	}
	if id == "" && inst == "" && key == "" {
		return nil, nil
	}
	if id == "" || inst == "" || key == "" {
		return nil, errors.New("GitHub App credentials need all of github_app_id, github_app_installation_id and github_app_private_key")
	}
	a, errA := strconv.ParseInt(id, 10, 64)
	b, errB := strconv.ParseInt(inst, 10, 64)
	if errA != nil || errB != nil || a <= 0 || b <= 0 {
		return nil, errors.New("github_app_id and github_app_installation_id must be positive numbers")
	}
	return &github.App{ID: a, InstallationID: b, PrivateKey: secret.New(key)}, nil
}

func cleanJSONError(err error) string {
	s := err.Error()
	return strings.TrimPrefix(s, "json: ")
}

// parseLabels accepts a list of strings or a comma-separated string.
func parseLabels(raw json.RawMessage, env string) ([]string, error) {
	var list []string
	switch {
	case len(raw) == 0 || string(raw) == "null":
		list = splitComma(env)
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("labels must be a list of strings or a comma-separated string")
		}
		list = splitComma(s)
	default:
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errors.New("labels must be a list of strings or a comma-separated string")
		}
	}
	if len(list) > 90 {
		return nil, fmt.Errorf("%d labels: at most 90 extra labels", len(list))
	}
	for _, l := range list {
		if !labelRE.MatchString(l) {
			return nil, fmt.Errorf("label %q: labels are up to 100 letters, digits, '.', '_', ':' and '-'", truncate(l, 40))
		}
	}
	return list, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseDuration accepts seconds (a number) or a Go duration ("10m").
func parseDuration(name string, raw json.RawMessage, env string, def time.Duration) (time.Duration, error) {
	s := env
	if len(raw) > 0 && string(raw) != "null" {
		var n float64
		if err := json.Unmarshal(raw, &n); err == nil {
			s = strconv.FormatFloat(n, 'f', -1, 64)
		} else if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("%s must be seconds or a duration like \"10m\"", name)
		}
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseFloat(s, 64)
		if nerr != nil {
			return 0, fmt.Errorf("%s %q must be seconds or a duration like \"10m\"", name, s)
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d <= 0 || d > 5*24*time.Hour {
		return 0, fmt.Errorf("%s %v must be between 1s and 120h", name, d)
	}
	return d, nil
}
