package scaler

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
github_url = "https://github.com/my-org"
state_file = "/var/lib/scaler/state.json"
listen     = "127.0.0.1:9102"

scale_set "runpod-h100" {
  endpoint     = "abc123xyz"
  runner_group = "gpu-runners"
  max_runners  = 4
  min_runners  = 1
  idle_timeout = "5m"
  job_timeout  = "2h"
  unfit_retries = 0
  health_capacity = false
}

scale_set "runpod-cpu" {
  endpoint    = "cpu-ep"
  max_runners = 10
  labels      = ["linux", "x64"]
  runner_user = "root"
}
`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig("scaler.hcl", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GitHubURL != "https://github.com/my-org" || cfg.RunPodAPI != DefaultRunPodAPI || cfg.CheckInterval != 15*time.Second || len(cfg.ScaleSets) != 2 {
		t.Fatalf("%+v", cfg)
	}
	h, c := cfg.ScaleSets[0], cfg.ScaleSets[1]
	if h.Name != "runpod-h100" || h.Endpoint != "abc123xyz" || h.RunnerGroup != "gpu-runners" || h.MaxRunners != 4 || h.MinRunners != 1 ||
		h.IdleTimeout != 5*time.Minute || h.JobTimeout != 2*time.Hour || h.UnfitRetries != 0 || h.HealthCapacity {
		t.Fatalf("h100: %+v", h)
	}
	if c.RunnerGroup != "default" || c.IdleTimeout != 10*time.Minute || c.JobTimeout != 6*time.Hour || c.RunnerUser != "root" || len(c.Labels) != 2 ||
		c.UnfitRetries != DefaultUnfitRetries || !c.HealthCapacity {
		t.Fatalf("cpu: %+v", c)
	}
}

// TestConfigErrors: every mistake is reported at once, each with
// file:line:col, and hostile values are not echoed.
func TestConfigErrors(t *testing.T) {
	src := `github_url = "https://github.com/a/b/c"
tyop = 1
scale_set "bad name" {
  endpoint    = "ghp_0123456789abcdef0123456789!"
  max_runners = 0
  idle_timeout = "soon"
}
scale_set "gpu" {
  endpoint    = "ep"
  max_runners = 2
  min_runners = 3
}
scale_set "GPU" {
  endpoint    = "ep"
  max_runners = 2
  job_timeout = "200h"
}
scale_set "cpu" {
  endpoint      = "ep"
  max_runners   = 2
  unfit_retries = 11
}
`
	_, err := ParseConfig("scaler.hcl", []byte(src))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("%v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"scaler.hcl:1:14: error: Invalid github_url", "scaler.hcl:2:1: error: Unsupported argument",
		"scaler.hcl:3:11: error: Invalid scale set name", "scaler.hcl:4:17: error: Invalid endpoint",
		"scaler.hcl:5:17: error: Invalid max_runners", "scaler.hcl:6:18: error: Invalid idle_timeout",
		"scaler.hcl:11:17: error: Invalid min_runners", "scaler.hcl:13:11: error: Duplicate scale set",
		"scaler.hcl:16:17: error: Invalid job_timeout", "scaler.hcl:21:19: error: Invalid unfit_retries", "^^^",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if !strings.Contains(msg, "(a value that looks like a credential) is not a RunPod endpoint id") {
		t.Errorf("a credential-looking value echoed in the detail:\n%s", msg)
	}
	if _, err := ParseConfig("x.hcl", []byte(`github_url = "https://github.com/o"`)); err == nil || !strings.Contains(err.Error(), "No scale set") {
		t.Errorf("no scale set: %v", err)
	}
}

func TestLoadConfigLimits(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.hcl")
	os.WriteFile(big, make([]byte, maxConfigSize+1), 0o644)
	if _, err := LoadConfig(big); err == nil || !strings.Contains(err.Error(), "KiB") {
		t.Fatalf("big file: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.hcl")); err == nil {
		t.Fatal("missing file loaded")
	}
}

func TestSecretsFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	s, err := SecretsFromEnv(env(map[string]string{"GITHUB_PAT": "ghp_x", "RUNPOD_API_KEY": "rpa_y"}))
	if err != nil || s.PAT.Reveal() != "ghp_x" || s.RunPodKey.Reveal() != "rpa_y" {
		t.Fatalf("%+v %v", s, err)
	}
	// An App wins over a PAT; a one-line PEM gets its newlines back.
	s, err = SecretsFromEnv(env(map[string]string{"GITHUB_PAT": "ghp_x", "RUNPOD_API_KEY": "k", "GITHUB_APP_ID": "123",
		"GITHUB_APP_INSTALLATION_ID": "9", "GITHUB_APP_PRIVATE_KEY": `-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----`}))
	if err != nil || !s.PAT.Empty() || s.AppClientID != "123" || s.AppInstallationID != 9 || !strings.Contains(s.AppPrivateKey.Reveal(), "\nabc\n") {
		t.Fatalf("%+v %v", s, err)
	}
	// An App in part is an error, not a silent fallback to the PAT.
	if _, err := SecretsFromEnv(env(map[string]string{"GITHUB_PAT": "ghp_x", "RUNPOD_API_KEY": "k", "GITHUB_APP_ID": "123"})); err == nil {
		t.Fatal("partial App accepted")
	}
	_, err = SecretsFromEnv(env(nil))
	if err == nil || !strings.Contains(err.Error(), "RUNPOD_API_KEY") || !strings.Contains(err.Error(), "GITHUB_PAT") {
		t.Fatalf("nothing set: %v", err)
	}
}
