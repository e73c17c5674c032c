package jobhandler

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// A job with jitconfig runs a runner the minting side (dispatch, a
// scaler) registered with its own credential: the worker registers,
// removes and sweeps nothing, and calls no GitHub API.

// LeftRunner is a runner from a JIT config that may still be registered:
// it never took a job, or was stopped. The worker holds no credential to
// remove it; the side that minted the config does.
type LeftRunner struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// RemovedByMinter is runner_removed for a LeftRunner.
const RemovedByMinter = "left to the minting side"

// jitConflicts are the credential and registration fields in, in the
// contract's order: a job that brings a JIT config carries none of them.
func jitConflicts(in *rawInput) []string {
	set := map[string]bool{
		"github_pat": in.GitHubPAT != nil, "github_org": in.GitHubOrg != nil, "labels": given(in.Labels),
		"runner_group": in.RunnerGroup != nil, "github_api_url": in.GitHubAPIURL != nil, "mode": in.Mode != nil,
		"github_app_id": given(in.AppID), "github_app_installation_id": given(in.AppInstall), "github_app_private_key": in.AppKey != nil,
	}
	var out []string
	for _, name := range jobapi.FieldNames() {
		if set[name] {
			out = append(out, name)
		}
	}
	return out
}

// parseJITInput reads a job with jitconfig: the config, runner_name,
// runner_user and the timeouts. The endpoint's GitHub settings are not
// read; ALLOWED_GITHUB_SCOPES, when set, must list the config's scope.
func parseJITInput(in *rawInput, getenv func(string) string) (*Input, error) {
	p := &inputParser{in: in, getenv: getenv}
	if bad := jitConflicts(in); len(bad) > 0 {
		p.errs = append(p.errs, "jitconfig comes with "+strings.Join(bad, ", ")+": a JIT config is a runner registered already, so its job carries no credential or registration fields")
	}
	out := &Input{}
	var err error
	out.JIT, err = DecodeJITConfig(*in.JITConfig)
	p.check(err)
	if err == nil {
		p.check(checkJITRunner(out.JIT, in.RunnerName, getenv))
		out.Scope = out.JIT.Scope
	}
	p.check(parseEnums(out, "", p.str(in.RunnerUser, jobapi.EnvRunnerUser), getenv))
	out.Mode = ModeJITConfig
	p.timeouts(out)
	p.needs(out)
	if len(p.errs) > 0 {
		return nil, errors.New("invalid input: " + strings.Join(p.errs, "; "))
	}
	return out, nil
}

// checkJITRunner checks runner_name against the config, and the config's
// scope against ALLOWED_GITHUB_SCOPES when the endpoint sets it: its
// gitHubUrl must be on the endpoint's GitHub (GITHUB_API_URL's server,
// github.com when unset) and name a listed scope. This is a guard against
// mistakes, not an authorisation boundary: whoever mints the config writes
// its gitHubUrl, and the runner connects where serverUrl and the
// credentials say. Who may run jobs on the endpoint is whoever holds its
// RunPod API key.
func checkJITRunner(c *JITConfig, name *string, getenv func(string) string) error {
	if name != nil && strings.TrimSpace(*name) != "" && strings.TrimSpace(*name) != c.RunnerName {
		return fmt.Errorf("runner_name %s is not the name of the runner the JIT config registers (its .runner's agentName)", secret.Preview(strings.TrimSpace(*name)))
	}
	if strings.TrimSpace(getenv(EnvAllowedScopes)) == "" {
		return nil
	}
	allowed, _, err := allowedScopes(getenv)
	switch {
	case err != nil:
		return err
	case c.Scope.Owner == "":
		return errors.New("jitconfig: its .runner has no gitHubUrl, so the endpoint's " + EnvAllowedScopes + " cannot be checked")
	case !strings.EqualFold(c.WebHost, endpointWebHost(getenv)):
		return fmt.Errorf("jitconfig: the runner is for a GitHub at %s, not the endpoint's (%s, from %s), so the endpoint's %s cannot allow it",
			secret.Preview(c.WebHost), endpointWebHost(getenv), jobapi.EnvAPIURL, EnvAllowedScopes)
	case !permits(allowed, c.Scope):
		return fmt.Errorf("jitconfig: the runner is for %s, which the endpoint's %s does not list", secret.Preview(c.Scope.String()), EnvAllowedScopes)
	}
	return nil
}

// endpointWebHost is the host of the endpoint's GitHub: GITHUB_API_URL's
// server, github.com when unset ("" when it is not a URL).
func endpointWebHost(getenv func(string) string) string {
	api, err := github.CanonicalAPIURL(getenv(jobapi.EnvAPIURL), getenv(EnvTestLoopbackHTTP) == "1")
	if err != nil {
		return ""
	}
	u, err := url.Parse(github.ServerURL(api))
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}

// endpointGitHubVars are the endpoint's GitHub settings a JIT job does
// not use.
var endpointGitHubVars = []string{jobapi.EnvPAT, jobapi.EnvAppID, jobapi.EnvAppInstall, jobapi.EnvAppPrivateKey, jobapi.EnvOrg,
	jobapi.EnvLabels, jobapi.EnvRunnerGroup, jobapi.EnvAPIURL, jobapi.EnvMode}

// noteIgnored says, once per worker, which of the endpoint's GitHub
// settings JIT jobs leave unused.
func (h *Handler) noteIgnored(log *slog.Logger) {
	var set []string
	for _, k := range endpointGitHubVars {
		if h.getenv(k) != "" {
			set = append(set, k)
		}
	}
	if len(set) > 0 {
		h.ignoredOnce.Do(func() {
			log.Info("the endpoint's GitHub settings are ignored for JIT jobs (the runner is registered already; an endpoint that only takes JIT jobs needs none)", "settings", strings.Join(set, ","))
		})
	}
}

// jitResult is a JIT job's result before the runner starts.
func jitResult(in *Input) *Result {
	return &Result{RunnerName: in.JIT.RunnerName, RunnerID: in.JIT.RunnerID, Scope: in.Scope.String(), Mode: ModeJITConfig}
}

// notStarted is the error of a JIT job whose runner could not start: the
// runner stays registered, for the minting side to remove.
func notStarted(err error, in *Input, log *slog.Logger) error {
	if in.JIT == nil {
		return err
	}
	res := jitResult(in)
	leaveRunner(res, log)
	return newJobError(err, res)
}

// startJIT hands the config to the listener: the runner is registered
// already.
func (s *session) startJIT(u runpod.Updater) error {
	s.h.registrationOver()
	s.rcfg.JIT = s.in.JIT.Encoded
	s.minted = true
	res := s.res
	s.log.Info("runner from a JIT config (registered by the side that minted it)", "runner", res.RunnerName, "runner_id", res.RunnerID, "scope", res.Scope)
	u.Progress(map[string]any{"stage": "registered", "runner_name": res.RunnerName, "runner_id": res.RunnerID})
	return nil
}

// leaveJIT records what became of a JIT job's runner: GitHub removes an
// ephemeral runner after its job; otherwise it is left to the minting side.
func (s *session) leaveJIT() {
	if s.jitDone {
		s.res.RunnerRemoved = "by GitHub"
		return
	}
	leaveRunner(s.res, s.log)
}

func leaveRunner(res *Result, log *slog.Logger) {
	res.RunnerRemoved = RemovedByMinter
	res.RunnerLeft = &LeftRunner{ID: res.RunnerID, Name: res.RunnerName}
	log.Warn("the runner may still be registered: it took no job or was stopped, and the worker holds no GitHub credential; the side that minted its JIT config removes it",
		"runner", res.RunnerName, "runner_id", res.RunnerID)
}
