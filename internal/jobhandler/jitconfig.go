package jobhandler

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// JITConfig is a just-in-time runner configuration minted on the GitHub
// side (GitHub's generate-jitconfig, or a scale set's generatejitconfig)
// and given as the input jitconfig: the runner is registered already, so
// the worker needs no credential and calls no GitHub API.
type JITConfig struct {
	Encoded    secret.Value // white space removed
	RunnerID   int64        // .runner's agentId
	RunnerName string       // .runner's agentName
	// Scope is what .runner's gitHubUrl names; zero when it has none.
	// WebHost is that URL's host (github.com, a GHES host).
	Scope   github.Scope
	WebHost string
	// secrets are the decoded pieces (file contents, key parameters): a
	// runner may print them.
	secrets []secret.Value
}

// MaxJITConfig caps the input jitconfig (GitHub's are a few KiB).
const MaxJITConfig = 64 << 10

// The files a JIT config may hold; the listener writes each into its
// folder under that name.
const (
	jitRunnerFile = ".runner"
	jitCredsFile  = ".credentials"
	jitRSAFile    = ".credentials_rsaparams"
)

// DecodeJITConfig checks an encoded JIT config as the runner reads it
// (actions/runner Runner.Listener: base64 of a JSON object mapping file
// names to base64 file contents; .runner holds RunnerSettings). Errors
// name the part that is wrong, never its content.
func DecodeJITConfig(encoded string) (*JITConfig, error) {
	if len(encoded) > 2*MaxJITConfig {
		return nil, fmt.Errorf("jitconfig is %d bytes: at most %d", len(encoded), MaxJITConfig)
	}
	s := strings.Map(func(r rune) rune { // .NET's base64 decoder skips white space
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, encoded)
	switch {
	case s == "":
		return nil, errors.New("jitconfig is empty: give the encoded_jit_config GitHub's generate-jitconfig returned")
	case len(s) > MaxJITConfig:
		return nil, fmt.Errorf("jitconfig is %d bytes: at most %d", len(s), MaxJITConfig)
	}
	files, err := jitFiles(s)
	if err != nil {
		return nil, err
	}
	cfg := &JITConfig{Encoded: secret.New(s), secrets: []secret.Value{secret.New(strings.TrimSpace(encoded))}}
	for _, content := range files {
		cfg.secrets = append(cfg.secrets, secret.New(content))
	}
	if err := cfg.readCredentials(files); err != nil {
		return nil, err
	}
	return cfg, cfg.readRunner(files[jitRunnerFile])
}

// jitFiles decodes the config into its files' decoded contents.
func jitFiles(s string) (map[string]string, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("jitconfig is not base64: give the encoded_jit_config GitHub's generate-jitconfig returned, unchanged")
	}
	var enc map[string]string
	if err := json.Unmarshal(bytes.TrimPrefix(raw, []byte("\ufeff")), &enc); err != nil {
		return nil, errors.New("jitconfig does not decode to a JSON object of file names and base64 contents")
	}
	files := map[string]string{}
	for name, content := range enc {
		if name != jitRunnerFile && name != jitCredsFile && name != jitRSAFile {
			return nil, errors.New("jitconfig holds a file other than .runner, .credentials and .credentials_rsaparams")
		}
		b, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			return nil, fmt.Errorf("jitconfig's %s is not base64", name)
		}
		files[name] = string(b)
	}
	for _, name := range []string{jitRunnerFile, jitCredsFile} {
		if _, ok := files[name]; !ok {
			return nil, fmt.Errorf("jitconfig has no %s file", name)
		}
	}
	return files, nil
}

// readCredentials checks that the credential files are JSON objects and
// keeps their string values as secrets.
func (c *JITConfig) readCredentials(files map[string]string) error {
	for _, name := range []string{jitCredsFile, jitRSAFile} {
		content, ok := files[name]
		if !ok {
			continue
		}
		var obj map[string]any
		if err := unmarshalFile(content, &obj); err != nil {
			return fmt.Errorf("jitconfig's %s is not a JSON object", name)
		}
		c.keepStrings(obj)
	}
	return nil
}

// keepStrings adds every string in v (a decoded JSON value) long enough
// to be a secret.
func (c *JITConfig) keepStrings(v any) {
	switch v := v.(type) {
	case string:
		if len(v) >= 12 {
			c.secrets = append(c.secrets, secret.New(v))
		}
	case map[string]any:
		for _, x := range v {
			c.keepStrings(x)
		}
	case []any:
		for _, x := range v {
			c.keepStrings(x)
		}
	}
}

// runnerSettings are the fields of actions/runner's RunnerSettings the
// worker reads. The runner's deserializer matches names ignoring case, as
// encoding/json does.
type runnerSettings struct {
	AgentID     json.RawMessage `json:"agentId"`
	AgentName   string          `json:"agentName"`
	ServerURL   string          `json:"serverUrl"`
	ServerURLV2 string          `json:"serverUrlV2"`
	GitHubURL   string          `json:"gitHubUrl"`
}

// readRunner reads the runner's id, name and scope from .runner.
func (c *JITConfig) readRunner(content string) error {
	var rs runnerSettings
	var typ *json.UnmarshalTypeError
	err := unmarshalFile(content, &rs)
	switch {
	case errors.As(err, &typ) && typ.Field == "agentName":
		return errors.New("jitconfig's .runner: agentName must be a string")
	case err != nil:
		return errors.New("jitconfig's .runner is not a JSON object of the runner's settings")
	}
	var errs []string
	if c.RunnerID = agentID(rs.AgentID); c.RunnerID == 0 {
		errs = append(errs, "agentId must be a positive number")
	}
	c.RunnerName = strings.TrimSpace(rs.AgentName)
	if c.RunnerName == "" || len(c.RunnerName) > 256 || strings.ContainsFunc(c.RunnerName, unicode.IsControl) {
		errs = append(errs, "agentName is missing (or not a runner's name)")
	}
	if !httpURL(rs.ServerURL) && !httpURL(rs.ServerURLV2) {
		errs = append(errs, "serverUrl is missing or not an http(s) URL")
	}
	if rs.GitHubURL != "" {
		var err error
		if c.Scope, err = urlScope(rs.GitHubURL); err != nil {
			errs = append(errs, err.Error())
		}
		if u, err := url.Parse(rs.GitHubURL); err == nil {
			c.WebHost = strings.ToLower(u.Host)
		}
	}
	if len(errs) > 0 {
		return errors.New("jitconfig's .runner: " + strings.Join(errs, "; "))
	}
	return nil
}

// unmarshalFile decodes a file's JSON content, as the runner reads it
// (a leading byte order mark is skipped).
func unmarshalFile(content string, v any) error {
	return json.Unmarshal([]byte(strings.TrimPrefix(content, "\ufeff")), v)
}

// agentID is a positive id given as a number or, as in older configs, a
// string of digits; 0 otherwise.
func agentID(raw json.RawMessage) int64 {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// urlScope is the organisation, repository or enterprise a gitHubUrl
// (https://github.com/<org>[/<repo>] or .../enterprises/<slug>) names.
func urlScope(s string) (github.Scope, error) {
	bad := errors.New("gitHubUrl does not name an organisation, a repository or an enterprise")
	u, err := url.Parse(s)
	if err != nil || !httpURL(s) {
		return github.Scope{}, bad
	}
	scope, err := github.ParseScope(strings.Trim(u.Path, "/"))
	if err != nil {
		return github.Scope{}, bad
	}
	return scope, nil
}
