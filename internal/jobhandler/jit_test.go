package jobhandler

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// mintJIT asks the fake GitHub for a JIT config, as the minting side
// (dispatch, a scaler) does with its own credential.
func mintJIT(t *testing.T, e *env, scopePath, name string) (string, int64) {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"runner_group_id":1,"labels":["gpu-job-1"],"work_folder":"_work"}`, name)
	req, _ := http.NewRequest("POST", e.gh.URL+"/"+scopePath+"/actions/runners/generate-jitconfig", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+pat)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Runner struct{ ID int64 }
		JIT    string `json:"encoded_jit_config"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 201 || out.JIT == "" {
		t.Fatalf("minting a JIT config: %v %d", err, resp.StatusCode)
	}
	return out.JIT, out.Runner.ID
}

// noGitHubEnv empties the endpoint's GitHub settings: the recommended
// endpoint for JIT jobs holds no GitHub credential.
func noGitHubEnv(e *env) {
	for _, k := range []string{jobapi.EnvPAT, jobapi.EnvAPIURL, jobapi.EnvOrg, EnvAllowedScopes, EnvTestLoopbackHTTP} {
		delete(e.env, k)
	}
}

// workerCalls are the requests the fake GitHub got after the first n that
// did not come from the fake runner (/_fake/...).
func workerCalls(e *env, n int) []string {
	var out []string
	for _, r := range e.gh.Requests()[n:] {
		if !strings.HasPrefix(r.Path, "/_fake/") {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

func TestJITJobNeedsNoCredential(t *testing.T) {
	e := newEnv(t, map[string]any{"echo_secret": true})
	noGitHubEnv(e)
	jit, id := mintJIT(t, e, "orgs/my-org", "minted-1")
	n := len(e.gh.Requests())
	res, err, rec := e.run(t, context.Background(), map[string]any{"jitconfig": jit, "runner_name": "minted-1", "idle_timeout": 30})
	if err != nil {
		t.Fatalf("%v\n%s", err, e.logs.String())
	}
	if !res.JobRan || res.JobResult != "Succeeded" || res.RunnerID != id || res.RunnerName != "minted-1" || res.Mode != ModeJITConfig ||
		res.RunnerRemoved != "by GitHub" || res.RunnerLeft != nil || res.Scope != "my-org" {
		t.Errorf("result %+v", res)
	}
	if calls := workerCalls(e, n); len(calls) != 0 {
		t.Errorf("the worker called GitHub: %v", calls)
	}
	e.assertClean(t, rec, jit)
	d := e.dump(t)
	if env := fmt.Sprint(d["env"]); strings.Contains(env, jit) || strings.Contains(env, "ACTIONS_RUNNER_INPUT_JITCONFIG") {
		t.Error("the JIT config is in the job's environment")
	}
	if strings.Contains(fmt.Sprint(d["cmdlines"]), jit[:40]) || strings.Contains(fmt.Sprint(d["args"]), "jit") {
		t.Error("the JIT config is in a process's argv")
	}
	if !slices.ContainsFunc(rec.stream, func(l string) bool { return strings.Contains(l, "debug: jit config [redacted]") }) {
		t.Errorf("the runner's echo of its config was not redacted: %q", rec.stream)
	}
}

// An endpoint that still holds GitHub settings runs a JIT job without
// them: they are logged once as ignored, and no sweep runs.
func TestJITJobIgnoresEndpointCredential(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 2 {
		name := fmt.Sprintf("minted-%d", i)
		jit, _ := mintJIT(t, e, "repos/octo/repo", name)
		n := len(e.gh.Requests())
		res, err, rec := e.run(t, context.Background(), map[string]any{"jitconfig": jit})
		if err != nil || res.RunnerName != name || res.Scope != "octo/repo" {
			t.Fatalf("%v %+v\n%s", err, res, e.logs.String())
		}
		if err := e.handler.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if calls := workerCalls(e, n); len(calls) != 0 {
			t.Errorf("the worker called GitHub: %v", calls)
		}
		e.assertClean(t, rec, jit)
	}
	logs := e.logs.String()
	if c := strings.Count(logs, "ignored for JIT jobs"); c != 1 || !strings.Contains(logs, "GITHUB_PAT") || !strings.Contains(logs, "level=INFO msg=\"the endpoint's GitHub settings are ignored") {
		t.Errorf("%d notes about the ignored settings:\n%s", c, logs)
	}
}

// A runner that never took a job, or was stopped, may still be
// registered: the result says so, machine-readably, and leaves its
// removal to the minting side.
func TestJITRunnerLeftToMintingSide(t *testing.T) {
	for _, tc := range []struct {
		name      string
		behaviour map[string]any
		input     map[string]any
		cancelIn  time.Duration
		want      string
	}{
		{"idle timeout", map[string]any{"mode": "idle"}, map[string]any{"idle_timeout": 1}, 0, "no workflow job was assigned within idle_timeout 1s"},
		{"cancelled mid-job", map[string]any{"job_seconds": 30}, nil, 700 * time.Millisecond, "cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.behaviour)
			noGitHubEnv(e)
			jit, id := mintJIT(t, e, "orgs/my-org", "minted-idle")
			n := len(e.gh.Requests())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancelIn > 0 {
				time.AfterFunc(tc.cancelIn, cancel)
			}
			in := map[string]any{"jitconfig": jit}
			for k, v := range tc.input {
				in[k] = v
			}
			res, err, _ := e.run(t, ctx, in)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "the side that minted its JIT config removes it") {
				t.Fatalf("err = %v\n%s", err, e.logs.String())
			}
			if res == nil || res.RunnerLeft == nil || *res.RunnerLeft != (LeftRunner{ID: id, Name: "minted-idle"}) || res.RunnerRemoved != RemovedByMinter {
				t.Fatalf("result %+v", res)
			}
			b, _ := json.Marshal(res)
			if !strings.Contains(string(b), fmt.Sprintf(`"runner_left":{"id":%d,"name":"minted-idle"}`, id)) {
				t.Errorf("result JSON %s", b)
			}
			if calls := workerCalls(e, n); len(calls) != 0 {
				t.Errorf("the worker called GitHub: %v", calls)
			}
			// (A runner stopped mid-job reports its job's end, and GitHub
			// may then remove it: "may still be registered".)
			if tc.cancelIn == 0 && len(e.gh.Runners()) != 1 {
				t.Errorf("runners %+v: the worker cannot remove a minted runner", e.gh.Runners())
			}
			if strings.Contains(err.Error(), jit[:40]) || strings.Contains(e.logs.String(), jit[:40]) {
				t.Error("the JIT config leaked")
			}
		})
	}
}

// A job with both a JIT config and credential or registration fields is
// refused before anything starts, naming the fields.
func TestJITWithCredentialFieldsRefused(t *testing.T) {
	e := newEnv(t, nil)
	jit, _ := mintJIT(t, e, "orgs/my-org", "minted-both")
	n := len(e.gh.Requests())
	_, err, _ := e.run(t, context.Background(), map[string]any{"jitconfig": jit, "github_pat": pat, "github_org": "my-org", "labels": "x", "mode": "jit",
		"runner_group": "g", "github_api_url": e.gh.URL, "github_app_id": 1, "github_app_installation_id": 2, "github_app_private_key": "k"})
	want := "github_pat, github_org, labels, runner_group, github_api_url, mode, github_app_id, github_app_installation_id, github_app_private_key"
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), pat) {
		t.Fatalf("err = %v", err)
	}
	if calls := workerCalls(e, n); len(calls) != 0 {
		t.Errorf("the worker called GitHub: %v", calls)
	}
}

// encodeTestJIT builds a config of GitHub's shape from file contents.
func encodeTestJIT(files map[string]string) string {
	enc := map[string]string{}
	for k, v := range files {
		enc[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	b, _ := json.Marshal(enc)
	return base64.StdEncoding.EncodeToString(b)
}

const testCreds = `{"scheme":"OAuth","data":{"clientId":"SECRETCLIENT-1234567890abcdef"}}`

func testRunnerFile(runner string) map[string]string {
	return map[string]string{".runner": runner, ".credentials": testCreds, ".credentials_rsaparams": `{"d":"SECRETKEY-abcdef0123456789"}`}
}

func TestJITConfigValidation(t *testing.T) {
	good := `{"agentId":42,"agentName":"minted-1","poolId":1,"serverUrl":"https://pipelines.actions.githubusercontent.com/abc","gitHubUrl":"https://github.com/my-org","workFolder":"_work","ephemeral":true}`
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	parse := func(input map[string]any) (*Input, error) {
		b, _ := json.Marshal(input)
		return ParseInput(b, getenv)
	}
	in, err := parse(map[string]any{"jitconfig": encodeTestJIT(testRunnerFile(good)), "idle_timeout": "2m", "job_timeout": 60})
	if err != nil || in.JIT == nil || in.JIT.RunnerID != 42 || in.JIT.RunnerName != "minted-1" || in.JIT.Scope.String() != "my-org" ||
		in.IdleTimeout != 2*time.Minute || in.JobTimeout != time.Minute || in.RunnerUser != UserRunner || in.Mode != ModeJITConfig {
		t.Fatalf("%v %+v", err, in)
	}
	// The runner reads .runner with a case-insensitive deserializer, and
	// older configs carry the id as a string; its files may start with a
	// byte order mark; base64 may be wrapped.
	pascal := "\ufeff" + `{"AgentId":"3","AgentName":"Runner-3","PoolId":"1","ServerUrl":"https://pipelines.example/x","GitHubUrl":"https://ghe.example.com/octo/repo/"}`
	wrapped := encodeTestJIT(testRunnerFile(pascal))
	wrapped = wrapped[:30] + "\n" + wrapped[30:]
	if in, err := parse(map[string]any{"jitconfig": wrapped, "runner_name": "Runner-3"}); err != nil || in.JIT.RunnerID != 3 || in.JIT.Scope.String() != "octo/repo" {
		t.Errorf("PascalCase .runner: %v %+v", err, in)
	}
	noURL := `{"agentId":5,"agentName":"r5","serverUrlV2":"https://broker.actions.githubusercontent.com/"}`
	if in, err := parse(map[string]any{"jitconfig": encodeTestJIT(testRunnerFile(noURL))}); err != nil || in.JIT.Scope.Owner != "" {
		t.Errorf("a config without gitHubUrl: %v %+v", err, in)
	}
	without := func(name string) map[string]string { f := testRunnerFile(good); delete(f, name); return f }
	with := func(name, v string) map[string]string { f := testRunnerFile(good); f[name] = v; return f }
	for name, tc := range map[string]struct {
		jit, want string
		input     map[string]any
		env       map[string]string
	}{
		"empty":               {jit: " ", want: "jitconfig is empty"},
		"not base64":          {jit: "not base64 at all!" + testCreds, want: "jitconfig is not base64"},
		"too long":            {jit: strings.Repeat("QUFB", 20000), want: "jitconfig is 80000 bytes: at most 65536"},
		"not an object":       {jit: base64.StdEncoding.EncodeToString([]byte(`["SECRETCLIENT-1234567890abcdef"]`)), want: "a JSON object of file names"},
		"no .runner":          {jit: encodeTestJIT(without(".runner")), want: "jitconfig has no .runner"},
		"no .credentials":     {jit: encodeTestJIT(without(".credentials")), want: "jitconfig has no .credentials"},
		"unknown file":        {jit: encodeTestJIT(with("../../etc/SECRETCLIENT-1234567890abcdef", "x")), want: "jitconfig holds a file other than .runner, .credentials and .credentials_rsaparams"},
		"file not base64":     {jit: base64.StdEncoding.EncodeToString([]byte(`{".runner":"%%%SECRETCLIENT-1234567890abcdef"}`)), want: "jitconfig's .runner is not base64"},
		".runner not JSON":    {jit: encodeTestJIT(with(".runner", "SECRETCLIENT-1234567890abcdef")), want: "jitconfig's .runner is not a JSON object"},
		"credentials no JSON": {jit: encodeTestJIT(with(".credentials", "SECRETCLIENT-1234567890abcdef")), want: "jitconfig's .credentials is not a JSON object"},
		"no agentId":          {jit: encodeTestJIT(with(".runner", `{"agentName":"SECRETCLIENT-1234567890abcdef","serverUrl":"https://x.example"}`)), want: "jitconfig's .runner: agentId must be a positive number"},
		"agentId not a number": {jit: encodeTestJIT(with(".runner", `{"agentId":"SECRETCLIENT-1234567890abcdef","agentName":"a","serverUrl":"https://x.example"}`)),
			want: "jitconfig's .runner: agentId must be a positive number"},
		"agentName a number": {jit: encodeTestJIT(with(".runner", `{"agentId":1,"agentName":12,"serverUrl":"https://x.example"}`)), want: "jitconfig's .runner: agentName must be a string"},
		"no agentName":       {jit: encodeTestJIT(with(".runner", `{"agentId":1,"serverUrl":"https://x.example"}`)), want: "jitconfig's .runner: agentName is missing"},
		"no serverUrl":       {jit: encodeTestJIT(with(".runner", `{"agentId":1,"agentName":"a"}`)), want: "jitconfig's .runner: serverUrl is missing or not an http(s) URL"},
		"bad gitHubUrl": {jit: encodeTestJIT(with(".runner", `{"agentId":1,"agentName":"a","serverUrl":"https://x.example","gitHubUrl":"https://github.com/a/b/c/SECRETCLIENT-1234567890abcdef"}`)),
			want: "jitconfig's .runner: gitHubUrl does not name an organisation, a repository or an enterprise"},
		"runner_name mismatch": {jit: encodeTestJIT(testRunnerFile(good)), input: map[string]any{"runner_name": "other"},
			want: `runner_name "other" is not the name of the runner the JIT config registers`},
		"scope not allowed": {jit: encodeTestJIT(testRunnerFile(good)), env: map[string]string{EnvAllowedScopes: "octo, enterprises/acme"},
			want: `jitconfig: the runner is for "my-org", which the endpoint's ALLOWED_GITHUB_SCOPES does not list`},
		"scope unknown": {jit: encodeTestJIT(testRunnerFile(noURL)), env: map[string]string{EnvAllowedScopes: "my-org"},
			want: "jitconfig: its .runner has no gitHubUrl, so the endpoint's ALLOWED_GITHUB_SCOPES cannot be checked"},
		"bad timeout":  {jit: encodeTestJIT(testRunnerFile(good)), input: map[string]any{"idle_timeout": "soon"}, want: "idle_timeout"},
		"root refused": {jit: encodeTestJIT(testRunnerFile(good)), input: map[string]any{"runner_user": "root"}, want: "runner_user root is not allowed"},
	} {
		env = tc.env
		input := map[string]any{"jitconfig": tc.jit}
		for k, v := range tc.input {
			input[k] = v
		}
		_, err := parse(input)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "SECRET") || (len(tc.jit) > 20 && strings.Contains(msg, tc.jit[:20])) || len(msg) > 600 {
			t.Errorf("%s: the error echoes the config: %.300s", name, msg)
		}
	}
	env = map[string]string{EnvAllowedScopes: "octo, my-org", "GITHUB_API_URL": "https://ghe.example.com/api/v3"}
	if _, err := parse(map[string]any{"jitconfig": encodeTestJIT(testRunnerFile(pascal))}); err != nil {
		t.Errorf("octo/repo under an allowed organisation: %v", err)
	}
	// A listed scope on another GitHub (here a forged gitHubUrl's host) is
	// not the endpoint's.
	delete(env, "GITHUB_API_URL")
	if _, err := parse(map[string]any{"jitconfig": encodeTestJIT(testRunnerFile(pascal))}); err == nil ||
		!strings.Contains(err.Error(), `the runner is for a GitHub at "ghe.example.com", not the endpoint's (github.com`) {
		t.Errorf("a listed scope on another host: %v", err)
	}
	env = nil
	if _, err := parse(map[string]any{"github_org": "my-org", "github_pat": pat, "runner_name": "x"}); err == nil || !strings.Contains(err.Error(), "runner_name is given only with jitconfig") {
		t.Errorf("runner_name without jitconfig: %v", err)
	}
}

// The runner gets listener.DefaultStopGrace (45 s) to cancel its job and
// report it, bounded by the budget after a cancel: half of it when the
// runner must be removed afterwards, all but a tenth for a JIT job, which
// removes nothing. An explicit StopGrace wins.
func TestStopGraceDefault(t *testing.T) {
	for _, tc := range []struct {
		grace, stop time.Duration
		jit         bool
		want        time.Duration
	}{
		{0, 0, false, 45 * time.Second},                // the default 70 s grace: budget 56 s, 10 s of it for the removal
		{0, 0, true, 45 * time.Second},                 // nothing to remove after the stop
		{25 * time.Second, 0, false, 10 * time.Second}, // budget 20 s: half for the removal
		{25 * time.Second, 0, true, 18 * time.Second},
		{6 * time.Second, 0, false, 2 * time.Second},
		{6 * time.Second, 0, true, 3 * time.Second},
		{5 * time.Minute, 0, false, 45 * time.Second},
		{5 * time.Minute, 0, true, 45 * time.Second},
		{70 * time.Second, 0, true, 45 * time.Second}, // budget 56 s
		{5 * time.Minute, 3 * time.Second, false, 3 * time.Second},
	} {
		h := &Handler{Grace: tc.grace, StopGrace: tc.stop}
		if got := h.stopGrace(tc.jit); got != tc.want {
			t.Errorf("grace %v, StopGrace %v, JIT %v: stop grace %v, want %v", tc.grace, tc.stop, tc.jit, got, tc.want)
		}
	}
}

// A JIT job's runner that ignores its stop is killed in time for the
// result too.
func TestJITStopFitsTheGrace(t *testing.T) {
	e := newEnv(t, map[string]any{"job_seconds": 30, "ignore_term": true})
	noGitHubEnv(e)
	jit, _ := mintJIT(t, e, "orgs/my-org", "minted-stop")
	e.handler.Grace = 6 * time.Second
	e.handler.StopGrace = 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	go func() {
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.logs.String(), "Running job") && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		cancelled = time.Now()
		cancel()
	}()
	res, err, _ := e.run(t, ctx, map[string]any{"jitconfig": jit})
	took := time.Since(cancelled)
	if err == nil || !strings.Contains(err.Error(), "cancel") || res == nil || res.RunnerLeft == nil {
		t.Errorf("err = %v, result %+v", err, res)
	}
	if took > e.handler.Grace-time.Second || took < 3*time.Second {
		t.Errorf("returned %v after the cancel, with a %v grace (stop grace 3 s)", took.Round(time.Millisecond), e.handler.Grace)
	}
}

// A runner that cannot start (a broken image) is left registered too.
func TestJITBrokenImageLeavesRunner(t *testing.T) {
	e := newEnv(t, nil)
	noGitHubEnv(e)
	jit, id := mintJIT(t, e, "orgs/my-org", "minted-broken")
	if err := os.Remove(filepath.Join(e.root, "bin", "Runner.Listener")); err != nil {
		t.Fatal(err)
	}
	res, err, _ := e.run(t, context.Background(), map[string]any{"jitconfig": jit})
	if err == nil || !strings.Contains(err.Error(), "may still be registered") || res == nil || res.RunnerLeft == nil || res.RunnerLeft.ID != id {
		t.Fatalf("err = %v, result %+v", err, res)
	}
}
