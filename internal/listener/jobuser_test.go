package listener_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// jobEnv runs one job as an unprivileged account with base as the
// worker's environment (and allow as RUNNER_ENV_ALLOW), and returns the
// environment the job saw and the account's home folder.
func jobEnv(t *testing.T, base, allow []string) (map[string]string, string) {
	t.Helper()
	u := runnerUser(t)
	dumpDir, err := os.MkdirTemp("", "wgr-env-dump-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dumpDir) })
	os.Chmod(dumpDir, 0o777)
	dump := filepath.Join(dumpDir, "dump.json")
	root := ownedRoot(t, u, map[string]any{"job_seconds": 0, "dump": dump})
	var out lines
	cfg := config(root, &secret.Redactor{}, &out)
	cfg.User = u.Username
	cfg.BaseEnv = append(base, "PATH="+os.Getenv("PATH"))
	cfg.Allow = allow
	if res, err := run(t, context.Background(), cfg); err != nil || res.JobResult != "Succeeded" {
		t.Fatalf("result %+v, error %v\n%s", res, err, strings.Join(out.all(), "\n"))
	}
	raw, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	var d struct{ Env []string }
	json.Unmarshal(raw, &d)
	env := map[string]string{}
	for _, kv := range d.Env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := env[k]; dup {
			t.Errorf("%s set twice", k)
		}
		env[k] = v
	}
	return env, u.HomeDir
}

// The job user gets its own HOME and one tool cache under both names
// actions/setup-* read (RUNNER_TOOL_CACHE; AGENT_TOOLSDIRECTORY, which
// setup-python prefers), whichever the image set, also in allow-list mode.
func TestToolCacheAndHome(t *testing.T) {
	for _, tc := range []struct {
		name  string
		base  []string
		allow []string
		want  string
	}{
		{"RUNNER_TOOL_CACHE", []string{"RUNNER_TOOL_CACHE=/opt/hostedtoolcache"}, nil, "/opt/hostedtoolcache"},
		{"AGENT_TOOLSDIRECTORY", []string{"AGENT_TOOLSDIRECTORY=/opt/agent"}, nil, "/opt/agent"},
		{"both, different", []string{"AGENT_TOOLSDIRECTORY=/opt/agent", "RUNNER_TOOL_CACHE=/opt/hostedtoolcache"}, nil, "/opt/hostedtoolcache"},
		{"allow list", []string{"RUNNER_TOOL_CACHE=/opt/hostedtoolcache", "HOME=/home/image", "DROPPED=1"}, []string{"KEEP"}, "/opt/hostedtoolcache"},
		{"none", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, home := jobEnv(t, append(tc.base, "HOME=/root"), tc.allow)
			if env["HOME"] != home {
				t.Errorf("HOME=%q, want the account's %q", env["HOME"], home)
			}
			for _, k := range []string{"RUNNER_TOOL_CACHE", "AGENT_TOOLSDIRECTORY"} {
				if v, ok := env[k]; v != tc.want || ok != (tc.want != "") {
					t.Errorf("%s=%q (set %v), want %q", k, v, ok, tc.want)
				}
			}
			if _, ok := env["DROPPED"]; ok {
				t.Error("the allow list did not apply")
			}
		})
	}
}
