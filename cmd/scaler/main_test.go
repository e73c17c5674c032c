package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	conf := func(stateFile, listen string) string {
		return fmt.Sprintf("github_url = %q\nstate_file = %q\nlisten = %q\n", "https://github.com/my-org", stateFile, listen) +
			"scale_set \"runpod-gpu\" {\n  endpoint    = \"abc123\"\n  max_runners = 3\n}\n"
	}
	os.WriteFile(good, []byte(conf(filepath.Join(dir, "state.json"), "0.0.0.0:9102")), 0o644)
	env := map[string]string{"GITHUB_PAT": "ghp_secretsecretsecret", "RUNPOD_API_KEY": "rpa_secretsecret"}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	if code := run([]string{"--config", good, "--check"}, &out, getenv); code != 0 || !strings.Contains(out.String(), "1 scale sets") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if strings.Contains(out.String(), "secret") {
		t.Fatalf("a credential printed: %s", out.String())
	}
	for _, want := range []string{"state file", "writable", "not verified", "warning: listen 0.0.0.0:9102 is not loopback"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--check does not say %q: %s", want, out.String())
		}
	}
	unwritable := filepath.Join(dir, "unwritable.hcl")
	os.WriteFile(unwritable, []byte(conf(filepath.Join(dir, "no-such-dir", "state.json"), "127.0.0.1:9102")), 0o644)
	out.Reset()
	if code := run([]string{"--config", unwritable, "--check"}, &out, getenv); code != 1 || !strings.Contains(out.String(), "no-such-dir") {
		t.Fatalf("unwritable state file: exit %d: %s", code, out.String())
	}
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(bad, []byte("github_url = 1\nscale_set \"x\" {\n  endpoint = \"e\"\n}\n"), 0o644)
	out.Reset()
	if code := run([]string{"--config", bad}, &out, getenv); code != 1 || !strings.Contains(out.String(), "bad.hcl:2:15: error: Missing required argument") {
		t.Fatalf("bad config: exit %d: %s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--config", good}, &out, func(string) string { return "" }); code != 1 || !strings.Contains(out.String(), "RUNPOD_API_KEY") {
		t.Fatalf("no credentials: exit %d: %s", code, out.String())
	}
}

// TestDependencies: the scaler is a small always-on service; it links
// neither the image builders nor Docker.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/moby/buildkit", "github.com/docker/", "go-containerregistry/pkg/v1", "internal/build",
			"internal/imagegen", "internal/registry"} {
			if strings.Contains(p, bad) {
				t.Errorf("the scaler links %s", p)
			}
		}
	}
}
