// Package jobhandler is the RunPod job handler of worker-github_runner: for each
// job it registers an ephemeral GitHub Actions runner, lets it run exactly
// one workflow job, guarantees the runner is removed afterwards, and
// returns a structured result. A job may instead bring a runner
// registered on the GitHub side (a JIT config, see jit.go): the worker
// then runs it and calls no GitHub API.
package jobhandler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/runpod-workers/worker-github_runner/internal/fitness"
	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
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
	Mode        Mode
	RunnerUser  User
	// SelfTest checks the image and registers nothing (RunPod Hub tests).
	SelfTest bool
	// FromEndpoint says the credential is the endpoint's (its environment),
	// not the job's: it is then used only with the endpoint's API URL and
	// scopes.
	FromEndpoint bool
	// JIT is the input jitconfig: a runner registered on the GitHub side.
	// The credential and registration fields above are then unset.
	JIT *JITConfig
	// GPUCount and MinGPUMemMiB are what the job needs of the host
	// (gpu_count, min_gpu_memory_mb, else the endpoint's FITNESS_GPU_COUNT
	// and FITNESS_MIN_GPU_MEMORY_MB; 0: any): see fitness.go.
	GPUCount     int
	MinGPUMemMiB int64
	// TestOnlyAllowLoopbackHTTP is WGR_TEST_ALLOW_HTTP_LOOPBACK=1: tests
	// against a fake GitHub on 127.0.0.1 over plain http. Never in production.
	TestOnlyAllowLoopbackHTTP bool
}

// Defaults when neither the input nor the environment says.
const (
	DefaultIdleTimeout = 5 * time.Minute
	DefaultJobTimeout  = 6 * time.Hour
)

// rawInput is the job input as sent (jobapi.Input). Each field also has
// an environment variable (the endpoint's settings, jobapi.Fields); the
// input wins, as in the seed.
type rawInput = jobapi.Input

// Fields lists the input fields and their environment variables.
var Fields = jobapi.Fields

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)

// Endpoint settings that are not job input fields.
const (
	// EnvAllowedScopes lists the organisations, owner/repo and
	// enterprises/<slug> the endpoint's credential may be used for
	// (default: GITHUB_ORG's value).
	EnvAllowedScopes = "ALLOWED_GITHUB_SCOPES"
	// EnvAllowRoot allows runner_user root (default off).
	EnvAllowRoot = "RUNNER_ALLOW_ROOT"
	// EnvTestLoopbackHTTP=1 lets credentials go over plain http to a
	// loopback address: for tests against a fake GitHub only.
	EnvTestLoopbackHTTP = "WGR_TEST_ALLOW_HTTP_LOOPBACK"
	// EnvDeny and EnvAllow adjust which of the worker's variables the
	// runner's environment leaves out (listener.Config's Deny and Allow).
	EnvDeny  = "RUNNER_ENV_DENY"
	EnvAllow = "RUNNER_ENV_ALLOW"
)

// StartupWarnings are what a worker started with this environment must
// say loudly: settings that weaken its security.
func StartupWarnings(getenv func(string) string) []string {
	var w []string
	if getenv(EnvTestLoopbackHTTP) != "" {
		w = append(w, EnvTestLoopbackHTTP+" is set: credentials may go over plain http to 127.0.0.1/localhost; it is for tests against a fake GitHub only, never set it on an endpoint")
	}
	switch c := sudoConflict(getenv); {
	case c != "":
		w = append(w, c+"; until then every job is refused")
	case truthy(getenv(EnvSudo)):
		w = append(w, EnvSudo+" is on: workflow jobs may use passwordless sudo (root); only jobs with a jitconfig are taken")
	}
	return w
}

// Settings are the endpoint's variables that are not job input fields
// (WORKER_* and RUNNER_ROOT come with the image).
var Settings = []string{EnvAllowedScopes, EnvAllowRoot, EnvSudo, EnvSweep, EnvSweepAfter, EnvDeny, EnvAllow,
	fitness.EnvCheck, fitness.EnvMinDisk, fitness.EnvMinMemory, fitness.EnvFlavour, fitness.EnvCUDA}

// ParseInput validates a job's input (a JSON object) with environment
// fallbacks and the endpoint's rules for its own credential. All problems
// are reported together; input values are echoed only when short and not
// credential-like (secret.Preview), and never for fields whose values may
// be secrets.
func ParseInput(raw []byte, getenv func(string) string) (*Input, error) {
	in, err := decodeInput(raw)
	switch {
	case err != nil:
		return nil, err
	case in.SelfTest:
		return &Input{SelfTest: true}, nil
	case in.JITConfig != nil:
		return parseJITInput(in, getenv)
	}
	p := &inputParser{in: in, getenv: getenv}
	if in.RunnerName != nil {
		p.errs = append(p.errs, "runner_name is given only with jitconfig: the worker names the runners it registers")
	}
	out := &Input{
		RunnerGroup:               p.str(in.RunnerGroup, jobapi.EnvRunnerGroup),
		TestOnlyAllowLoopbackHTTP: getenv(EnvTestLoopbackHTTP) == "1",
	}
	p.check(parseCredential(*in, getenv, out))
	p.where(out)
	out.Labels, err = parseLabels(in.Labels, getenv(jobapi.EnvLabels))
	p.check(err)
	if len(out.RunnerGroup) > 100 || strings.ContainsFunc(out.RunnerGroup, unicode.IsControl) {
		p.errs = append(p.errs, "runner_group must be a runner group's name (one line, up to 100 characters)")
	}
	p.check(parseEnums(out, p.str(in.Mode, jobapi.EnvMode), p.str(in.RunnerUser, jobapi.EnvRunnerUser), getenv))
	p.timeouts(out)
	p.needs(out)
	if len(p.errs) > 0 {
		return nil, errors.New("invalid input: " + strings.Join(p.errs, "; "))
	}
	return out, nil
}

// decodeInput decodes a JSON object with only the contract's fields.
func decodeInput(raw []byte) (*rawInput, error) {
	var in rawInput
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("input must be a JSON object like {\"github_org\": \"my-org\"}")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("invalid input: %s (known fields: %s)", jsonError(err), strings.Join(jobapi.FieldNames(), ", "))
	}
	return &in, nil
}

// inputParser collects every problem of one input.
type inputParser struct {
	in     *rawInput
	getenv func(string) string
	errs   []string
}

func (p *inputParser) check(err error) {
	if err != nil {
		p.errs = append(p.errs, err.Error())
	}
}

// timeouts reads idle_timeout and job_timeout.
func (p *inputParser) timeouts(out *Input) {
	var err error
	out.IdleTimeout, err = parseDuration("idle_timeout", p.in.IdleTimeout, p.getenv(jobapi.EnvIdleTimeout), DefaultIdleTimeout)
	p.check(err)
	out.JobTimeout, err = parseDuration("job_timeout", p.in.JobTimeout, p.getenv(jobapi.EnvJobTimeout), DefaultJobTimeout)
	p.check(err)
}

// str is a string field, else its endpoint variable, trimmed.
func (p *inputParser) str(v *string, env string) string {
	if v != nil {
		return strings.TrimSpace(*v)
	}
	return strings.TrimSpace(p.getenv(env))
}

// where reads the scope and the API URL, and keeps the endpoint's
// credential to the endpoint's own.
func (p *inputParser) where(out *Input) {
	var err error
	if p.in.GitHubOrg == nil {
		err = oneOrg(p.getenv)
	}
	if err == nil {
		out.Scope, err = github.ParseScope(p.str(p.in.GitHubOrg, jobapi.EnvOrg))
	}
	p.check(err)
	out.APIURL, err = github.CanonicalAPIURL(p.str(p.in.GitHubAPIURL, jobapi.EnvAPIURL), out.TestOnlyAllowLoopbackHTTP)
	p.check(err)
	if err == nil && out.FromEndpoint {
		p.check(checkEndpointAPI(out, p.getenv))
	}
	if out.FromEndpoint && out.Scope.Owner != "" {
		p.check(checkEndpointScope(out.Scope, p.getenv))
	}
}

// jsonError explains a decoding error without echoing the input (Go's
// messages quote unknown field names and number literals whole).
func jsonError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("%s must be a %s, not a %s", secret.Preview(typ.Field), typ.Type, strings.Fields(typ.Value + " value")[0])
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, uerr := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		if uerr != nil {
			return "an unknown field"
		}
		return "unknown field " + secret.Preview(name)
	}
	return "not a valid JSON object"
}

// parseCredential picks the credential: the job's own (github_pat, or all
// three GitHub App fields in the input), else the endpoint's (GITHUB_PAT,
// else GITHUB_APP_*). A credential is never put together from both: the
// endpoint's App key is used only with the endpoint's App settings.
func parseCredential(in rawInput, getenv func(string) string, out *Input) error {
	jobPAT := in.GitHubPAT != nil && strings.TrimSpace(*in.GitHubPAT) != ""
	jobApp := given(in.AppID) || given(in.AppInstall) || in.AppKey != nil
	var app *github.App
	var err error
	switch {
	case jobPAT:
		out.PAT = secret.New(strings.TrimSpace(*in.GitHubPAT))
		if jobApp {
			_, err = parseApp(in, nil)
		}
	case jobApp:
		app, err = parseApp(in, nil)
	default:
		if in.GitHubPAT == nil { // an explicit "" turns the endpoint's PAT off
			if err := checkPlaceholder(jobapi.EnvPAT, getenv); err != nil {
				return err
			}
			out.PAT = secret.New(strings.TrimSpace(getenv(jobapi.EnvPAT)))
		}
		if out.PAT.Empty() {
			app, err = parseApp(rawInput{}, getenv)
		}
		out.FromEndpoint = !out.PAT.Empty() || app != nil
	}
	out.App = app
	switch {
	case err != nil:
		return err
	case out.PAT.Empty() && app == nil:
		return errors.New("github_pat is missing: give it in the input or set GITHUB_PAT on the endpoint (or GitHub App credentials: github_app_id, github_app_installation_id, github_app_private_key)")
	case strings.ContainsAny(out.PAT.Reveal(), " \t\r\n"):
		return errors.New("github_pat contains white space")
	}
	return nil
}

func given(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// checkEndpointAPI keeps the endpoint's credential at home: it goes only
// to the endpoint's GITHUB_API_URL, or to github.com when that is unset.
// A job may name another API URL only with a credential of its own.
func checkEndpointAPI(out *Input, getenv func(string) string) error {
	home, err := github.CanonicalAPIURL(getenv(jobapi.EnvAPIURL), out.TestOnlyAllowLoopbackHTTP)
	if err == nil && out.APIURL == home {
		return nil
	}
	return errors.New("github_api_url: the endpoint's credential is sent only to the endpoint's GITHUB_API_URL (github.com when it is unset); to use another server, give the job's own github_pat (or GitHub App credentials) in the input")
}

// oneOrg checks that GITHUB_ORG names one scope: a list there would
// silently become the credential's allow-list.
func oneOrg(getenv func(string) string) error {
	if strings.Contains(getenv(jobapi.EnvOrg), ",") {
		return errors.New("the endpoint's GITHUB_ORG holds a list: it names one organisation, owner/repo or enterprises/<slug> (the default scope); list the scopes the endpoint's credential may be used for in " + EnvAllowedScopes)
	}
	return nil
}

// checkEndpointScope allows the endpoint's credential only for the scopes
// in ALLOWED_GITHUB_SCOPES, else for GITHUB_ORG's value.
func checkEndpointScope(scope github.Scope, getenv func(string) string) error {
	allowed, setting, err := allowedScopes(getenv)
	switch {
	case err != nil:
		return err
	case len(allowed) == 0:
		return errors.New("github_org: the endpoint sets neither GITHUB_ORG nor " + EnvAllowedScopes + ", so its credential may not be used; set one of them, or give the job's own github_pat")
	case !permits(allowed, scope):
		return fmt.Errorf("github_org %s: the endpoint's credential may be used only for its %s; give the job's own github_pat for another scope", secret.Preview(scope.String()), setting)
	}
	return nil
}

// allowedScopes reads ALLOWED_GITHUB_SCOPES, else GITHUB_ORG, and says
// which it read.
func allowedScopes(getenv func(string) string) ([]github.Scope, string, error) {
	setting, list := EnvAllowedScopes, splitComma(getenv(EnvAllowedScopes))
	if len(list) == 0 {
		if err := oneOrg(getenv); err != nil {
			return nil, jobapi.EnvOrg, err
		}
		setting, list = jobapi.EnvOrg, splitComma(getenv(jobapi.EnvOrg))
	}
	var out []github.Scope
	for i, s := range list {
		sc, err := github.ParseScope(s)
		if err != nil {
			return nil, setting, fmt.Errorf("the endpoint's %s entry %d is not an organisation, owner/repo or enterprises/<slug>", setting, i+1)
		}
		out = append(out, sc)
	}
	return out, setting, nil
}

// permits: an entry allows itself; an organisation also its repositories.
// GitHub's names are case-insensitive.
func permits(allowed []github.Scope, s github.Scope) bool {
	for _, a := range allowed {
		sameOwner := strings.EqualFold(a.Owner, s.Owner)
		switch {
		case a.Kind == s.Kind && sameOwner && strings.EqualFold(a.Repo, s.Repo):
			return true
		case a.Kind == github.Org && s.Kind == github.Repo && sameOwner:
			return true
		}
	}
	return false
}

// Mode is how the runner registers: a just-in-time configuration (the
// default) or a registration token and config.sh.
type Mode string

const (
	ModeJIT   Mode = "jit"
	ModeToken Mode = "token"
	// ModeJITConfig is a job that brought a JIT config (input jitconfig):
	// the worker registered nothing. It is not a value of the input mode.
	ModeJITConfig Mode = "jitconfig"
)

// User is the account the runner runs as: the image's unprivileged
// account (the default) or root, where the endpoint allows it.
type User string

const (
	UserRunner User = "runner"
	UserRoot   User = "root"
)

// parseEnums sets mode and runner_user, checked without echoing them (a
// token pasted into the wrong field must not end up in a log).
func parseEnums(out *Input, mode, user string, getenv func(string) string) error {
	var errs []string
	switch Mode(strings.ToLower(mode)) {
	case "", ModeJIT:
		out.Mode = ModeJIT
	case ModeToken:
		out.Mode = ModeToken
	default:
		errs = append(errs, "mode must be jit (default) or token")
	}
	switch User(user) {
	case "", UserRunner:
		out.RunnerUser = UserRunner
	case UserRoot:
		out.RunnerUser = UserRoot
		if !truthy(getenv(EnvAllowRoot)) {
			errs = append(errs, "runner_user root is not allowed on this endpoint: a root runner's jobs can read the worker's secrets; set "+EnvAllowRoot+"=1 on the endpoint to allow it")
		}
	default:
		errs = append(errs, "runner_user must be runner (default) or root")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// parseApp reads GitHub App credentials, all three or none: from the
// input when getenv is nil, else from the environment.
func parseApp(in rawInput, getenv func(string) string) (*github.App, error) {
	where := "in the input"
	if getenv == nil {
		getenv = func(string) string { return "" }
	} else {
		where = "on the endpoint (GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID, GITHUB_APP_PRIVATE_KEY)"
	}
	num := func(raw json.RawMessage, env string) (string, error) {
		if given(raw) {
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
	if err := checkPlaceholder(jobapi.EnvAppPrivateKey, getenv); err != nil {
		return nil, err
	}
	id, err1 := num(in.AppID, jobapi.EnvAppID)
	inst, err2 := num(in.AppInstall, jobapi.EnvAppInstall)
	key := getenv(jobapi.EnvAppPrivateKey)
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
		return nil, errors.New("GitHub App credentials need all of github_app_id, github_app_installation_id and github_app_private_key " + where + " (the endpoint's App key is used only with the endpoint's App settings)")
	}
	a, errA := strconv.ParseInt(id, 10, 64)
	b, errB := strconv.ParseInt(inst, 10, 64)
	if errA != nil || errB != nil || a <= 0 || b <= 0 {
		return nil, errors.New("github_app_id and github_app_installation_id must be positive numbers")
	}
	return &github.App{ID: a, InstallationID: b, PrivateKey: secret.New(key)}, nil
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
	for i, l := range list {
		if !labelRE.MatchString(l) {
			return nil, fmt.Errorf("label %d of %d %s: labels are up to 100 letters, digits, '.', '_', ':' and '-'", i+1, len(list), secret.Preview(l))
		}
	}
	return list, nil
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

// MaxTimeout bounds idle_timeout and job_timeout (RunPod's longest
// execution timeout is five days).
const MaxTimeout = 120 * time.Hour

// parseDuration accepts seconds (a number) or a Go duration ("10m"),
// between 1 s and MaxTimeout.
func parseDuration(name string, raw json.RawMessage, env string, def time.Duration) (time.Duration, error) {
	s := env
	if given(raw) {
		var n float64
		if err := json.Unmarshal(raw, &n); err == nil {
			s = strconv.FormatFloat(n, 'g', -1, 64)
		} else if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("%s must be seconds or a duration like \"10m\"", name)
		}
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	outside := fmt.Errorf("%s must be between 1s and 120h, not %s", name, secret.Preview(s))
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseFloat(s, 64)
		switch {
		case errors.Is(nerr, strconv.ErrRange):
			return 0, outside
		case nerr != nil:
			return 0, fmt.Errorf("%s %s must be seconds or a duration like \"10m\"", name, secret.Preview(s))
		case math.IsNaN(n) || n < 1 || n > MaxTimeout.Seconds():
			return 0, outside
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d < time.Second || d > MaxTimeout {
		return 0, outside
	}
	return d, nil
}
