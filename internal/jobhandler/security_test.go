package jobhandler

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
)

func pemKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
}

// The endpoint's credential goes only to the endpoint's GitHub, and only
// for the scopes the endpoint allows; a job that names another server or
// scope must bring its own credential. Nothing reaches the other server.
func TestEndpointCredentialStaysHome(t *testing.T) {
	e := newEnv(t, nil)
	attacker := githubtest.New("ghp_ATTACKERSOWNTOKEN000000000000000000000")
	defer attacker.Close()
	key, pemText := pemKey(t)
	refused := []struct {
		name  string
		input map[string]any
		env   map[string]string
		want  string
	}{
		{"another API URL", map[string]any{"github_org": "my-org", "github_api_url": attacker.URL + "/api/v3/"}, nil, "github_api_url"},
		{"github.com, GITHUB_API_URL names GHES", map[string]any{"github_org": "my-org", "github_api_url": "https://github.com"}, nil, "github_api_url"},
		{"empty API URL, GITHUB_API_URL names GHES", map[string]any{"github_org": "my-org", "github_api_url": ""}, nil, "github_api_url"},
		{"api.github.com, GITHUB_API_URL names GHES", map[string]any{"github_org": "my-org", "github_api_url": "https://api.github.com/"}, nil, "github_api_url"},
		{"another API URL, no GITHUB_API_URL", map[string]any{"github_org": "my-org", "github_api_url": attacker.URL}, map[string]string{"GITHUB_API_URL": ""}, "github_api_url"},
		{"App key from the endpoint, URL from the job", map[string]any{"github_org": "my-org", "github_api_url": attacker.URL}, map[string]string{"GITHUB_PAT": "", "GITHUB_APP_ID": "4242", "GITHUB_APP_INSTALLATION_ID": "77", "GITHUB_APP_PRIVATE_KEY": pemText}, "github_api_url"},
		{"App key from the endpoint, installation from the job", map[string]any{"github_org": "my-org", "github_app_installation_id": 78}, map[string]string{"GITHUB_PAT": "", "GITHUB_APP_ID": "4242", "GITHUB_APP_INSTALLATION_ID": "77", "GITHUB_APP_PRIVATE_KEY": pemText}, "github_app_private_key"},
		{"another organisation", map[string]any{"github_org": "other-org"}, nil, "ALLOWED_GITHUB_SCOPES"},
		{"a repository elsewhere", map[string]any{"github_org": "octo/other"}, nil, "ALLOWED_GITHUB_SCOPES"},
		{"no scope list, not GITHUB_ORG", map[string]any{"github_org": "octo/hello-world"}, map[string]string{"ALLOWED_GITHUB_SCOPES": ""}, "GITHUB_ORG"},
		{"root without RUNNER_ALLOW_ROOT", map[string]any{"github_org": "my-org", "runner_user": "root"}, map[string]string{"RUNNER_ALLOW_ROOT": ""}, "RUNNER_ALLOW_ROOT"},
		{"root from the job's own credential", map[string]any{"github_org": "my-org", "runner_user": "root", "github_pat": "ghp_JOBSOWNTOKEN00000000000000000000000000"}, map[string]string{"RUNNER_ALLOW_ROOT": "0"}, "RUNNER_ALLOW_ROOT"},
		{"App over plain http", map[string]any{"github_org": "my-org", "github_pat": "", "github_app_id": 4242, "github_app_installation_id": 77, "github_app_private_key": pemText, "github_api_url": attacker.URL}, map[string]string{"WGR_TEST_ALLOW_HTTP_LOOPBACK": ""}, "https"},
		{"PAT over plain http", map[string]any{"github_org": "my-org", "github_pat": "ghp_JOBSOWNTOKEN00000000000000000000000000", "github_api_url": attacker.URL}, map[string]string{"WGR_TEST_ALLOW_HTTP_LOOPBACK": ""}, "https"},
	}
	// Whatever leaves for a host other than the fakes is caught here.
	var strays []string
	realHTTP := e.handler.HTTP
	e.handler.HTTP = &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		strays = append(strays, r.Method+" "+r.URL.String())
		return nil, errors.New("no network in tests")
	})}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			saved := map[string]string{}
			for k, v := range tc.env {
				saved[k] = e.env[k]
				e.env[k] = v
			}
			defer func() {
				for k, v := range saved {
					e.env[k] = v
				}
			}()
			seen := len(attacker.Requests()) + len(e.gh.Requests())
			_, err, rec := e.run(t, context.Background(), tc.input)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %s", err, tc.want)
			}
			for _, r := range append(attacker.Requests(), e.gh.Requests()...)[seen:] {
				t.Errorf("a request was made: %s %s (auth %.10s...)", r.Method, r.Path, r.Auth)
			}
			e.assertClean(t, rec, pemText[40:80])
			for _, s := range strays {
				t.Errorf("a request left for another server: %s", s)
			}
			strays = nil
		})
	}
	e.handler.HTTP = realHTTP
	if t.Failed() {
		return
	}
	// The same with the job's own credential is the job's business.
	attacker.AppKey, attacker.AppID = &key.PublicKey, "4242"
	in := map[string]any{"github_org": "other-org", "github_pat": "ghp_ATTACKERSOWNTOKEN000000000000000000000", "github_api_url": attacker.URL, "idle_timeout": 1}
	if _, err, _ := e.run(t, context.Background(), in); err != nil && strings.Contains(err.Error(), "invalid input") {
		t.Errorf("a job's own credential for its own server: %v", err)
	}
	if len(attacker.Requests()) == 0 {
		t.Error("the job's own credential did not reach the job's server")
	}
	for _, r := range attacker.Requests() {
		if strings.Contains(r.Auth, pat) {
			t.Errorf("the endpoint's PAT reached the job's server: %s", r.Path)
		}
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestScopeList(t *testing.T) {
	env := map[string]string{"GITHUB_PAT": pat, "ALLOWED_GITHUB_SCOPES": " My-Org , octo/hello-world, enterprises/acme "}
	getenv := func(k string) string { return env[k] }
	for scope, ok := range map[string]bool{
		"my-org": true, "MY-ORG": true, "my-org/any-repo": true, "octo/hello-world": true, "Octo/Hello-World": true,
		"enterprises/acme": true, "octo": false, "octo/other": false, "other/hello-world": false, "enterprises/other": false,
	} {
		_, err := ParseInput([]byte(`{"github_org": "`+scope+`"}`), getenv)
		if (err == nil) != ok {
			t.Errorf("%s: %v", scope, err)
		}
	}
	env["ALLOWED_GITHUB_SCOPES"] = "my-org,not a scope"
	if _, err := ParseInput([]byte(`{"github_org": "my-org"}`), getenv); err == nil || !strings.Contains(err.Error(), "ALLOWED_GITHUB_SCOPES") {
		t.Errorf("a bad ALLOWED_GITHUB_SCOPES: %v", err)
	}
}

// Every secret the worker holds is redacted from the runner's output: the
// RunPod API key, the endpoint's PAT and App key (line by line, as a job
// prints a PEM file) even when the job brings its own PAT, other secret
// variables, and what RUNNER_ENV_DENY names.
func TestEverySecretRedacted(t *testing.T) {
	e := newEnv(t, nil)
	_, pemText := pemKey(t)
	secrets := map[string]string{
		"RUNPOD_AI_API_KEY":          "rpa_SECRETKEY_abcdef",
		"GITHUB_APP_PRIVATE_KEY":     strings.ReplaceAll(pemText, "\n", `\n`),
		"GITHUB_APP_ID":              "4242",
		"GITHUB_APP_INSTALLATION_ID": "77",
		"HF_TOKEN":                   "hf_HUGGINGFACESECRET123",
		"DATABASE_PASSWORD":          "hunter2hunter2",
		"MY_CORP_THING":              "corp-thing-value-42",
	}
	for k, v := range secrets {
		e.env[k] = v
	}
	e.env["RUNNER_ENV_DENY"] = "MY_CORP_*"
	jobPAT := "ghp_JOBSOWNTOKEN00000000000000000000000000"
	pemLines := strings.Split(strings.TrimSpace(pemText), "\n")
	printed := append([]string{e.env["RUNPOD_AI_API_KEY"], pat, jobPAT, "hf_HUGGINGFACESECRET123", "hunter2hunter2", "corp-thing-value-42"}, pemLines[1:len(pemLines)-1]...)
	// A listener that prints them, as a job (or a root job reading the
	// worker's /proc/<pid>/environ) could.
	script := "#!/bin/sh\n"
	for _, s := range printed {
		script += "echo 'seen: " + s + "'\n"
	}
	listener := filepath.Join(e.root, "bin", "Runner.Listener")
	if err := os.WriteFile(listener, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e.gh.Tokens[jobPAT] = true
	_, runErr, rec := e.run(t, context.Background(), map[string]any{"github_org": "my-org", "github_pat": jobPAT})
	rec.mu.Lock()
	stream := strings.Join(rec.stream, "\n")
	rec.mu.Unlock()
	if !strings.Contains(stream, "seen: [redacted]") {
		t.Fatalf("the listener's output did not come through (%v):\n%s\n%s", runErr, stream, e.logs.String())
	}
	for _, s := range printed {
		if strings.Contains(stream, s) || strings.Contains(e.logs.String(), s) {
			t.Errorf("%.12s... is not redacted", s)
		}
	}
}

// Input values are echoed only when short and not credential-like, and
// never for fields whose values may be secrets; errors stay short.
func TestInputValuesNotEchoed(t *testing.T) {
	getenv := func(k string) string { return map[string]string{"GITHUB_PAT": pat, "GITHUB_ORG": "my-org"}[k] }
	huge := strings.Repeat("A", 1<<17)
	const leak = "ghp_LEAKEDTOKEN0123456789abcdefghijklmnop"
	for name, in := range map[string]map[string]any{
		"PAT in mode":          {"mode": leak},
		"PAT in runner_user":   {"runner_user": leak},
		"PAT in github_org":    {"github_org": leak},
		"PAT in labels":        {"labels": []string{"ok", leak + "!"}},
		"PAT in idle_timeout":  {"idle_timeout": leak},
		"PAT in runner_group":  {"runner_group": leak + "\x00"},
		"PAT in api url":       {"github_api_url": "ftp://" + leak},
		"PAT as a field name":  {leak: 1},
		"huge mode":            {"mode": huge},
		"huge org":             {"github_org": huge},
		"huge label":           {"labels": []string{huge}},
		"huge timeout":         {"job_timeout": huge},
		"huge field name":      {huge: 1},
		"huge api url":         {"github_api_url": "https://" + huge},
		"huge everything":      {"mode": huge, "runner_user": huge, "github_org": huge, "labels": huge, "idle_timeout": huge, "job_timeout": huge, "runner_group": huge},
		"huge app id":          {"github_app_id": huge},
		"control characters":   {"github_org": "a\x1b[31mred\x00"},
		"PAT in app id string": {"github_app_id": leak},
	} {
		b, _ := json.Marshal(in)
		_, err := ParseInput(b, getenv)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, leak[:16]) || strings.Contains(strings.ToLower(msg), strings.ToLower(leak[:16])) || strings.Contains(msg, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") {
			t.Errorf("%s: the value is echoed: %.300s", name, msg)
		}
		if len(msg) > 4096 {
			t.Errorf("%s: a %d-byte error", name, len(msg))
		}
		if strings.ContainsAny(msg, "\x1b\x00") {
			t.Errorf("%s: control characters in the error: %q", name, msg)
		}
	}
	// What the handler returns is capped too, and GitHub's answers do not
	// bring the value back.
	e := newEnv(t, nil)
	if _, err, _ := e.run(t, context.Background(), map[string]any{"github_org": "my-org", "runner_group": leak}); err == nil || strings.Contains(err.Error(), leak[:16]) {
		t.Errorf("runner_group: %v", err)
	}
	_, err := e.handler.Handle(context.Background(), &runpod.Job{ID: "j", Input: []byte(`{"mode": "` + huge + `", "github_org": "` + huge + `"}`)}, &recorder{})
	if err == nil || len(err.Error()) > 4096 {
		t.Errorf("handler error of %d bytes", len(err.Error()))
	}
}

func TestTimeoutBounds(t *testing.T) {
	getenv := func(k string) string { return map[string]string{"GITHUB_PAT": pat, "GITHUB_ORG": "my-org"}[k] }
	for _, v := range []any{"0.5", 0.5, "1ns", "999ms", 0, "-1", "NaN", "nan", "Inf", "-Inf", "+Inf", "121h", 432001, "1e300", 1e300} {
		b, _ := json.Marshal(map[string]any{"idle_timeout": v})
		_, err := ParseInput(b, getenv)
		if err == nil || !strings.Contains(err.Error(), "idle_timeout must be between 1s and 120h") {
			t.Errorf("%v: %v", v, err)
		} else if strings.Contains(err.Error(), "-2562047h") || strings.Contains(err.Error(), "2562047h") {
			t.Errorf("%v: %v", v, err)
		}
	}
	for _, v := range []any{"1", 1, "1s", "120h", 432000, "2.5", "10m"} {
		b, _ := json.Marshal(map[string]any{"job_timeout": v})
		if _, err := ParseInput(b, getenv); err != nil {
			t.Errorf("%v: %v", v, err)
		}
	}
}

// A missing runner account is found before anything is registered.
func TestRunnerAccountCheckedFirst(t *testing.T) {
	for _, mode := range []string{"jit", "token"} {
		e := newEnv(t, nil)
		e.handler.RunnerAccount = "wgr-no-such-user"
		_, err, _ := e.run(t, context.Background(), map[string]any{"github_org": "my-org", "runner_user": "runner", "mode": mode})
		if err == nil || !strings.Contains(err.Error(), "wgr-no-such-user") {
			t.Errorf("%s: err = %v", mode, err)
		}
		for _, r := range e.gh.Requests() {
			t.Errorf("%s: GitHub was called: %s %s", mode, r.Method, r.Path)
		}
	}
}
