package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The composite action's shell scripts pass shellcheck (actionlint checks
// workflows, not action.yml), and it calls only flags dispatch knows.
func TestActionScripts(t *testing.T) {
	b, err := os.ReadFile("../../.github/actions/runpod-runner/action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var scripts []string
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		if trimmed != "run: |" {
			continue
		}
		indent := len(lines[i]) - len(trimmed) + 2
		var body []string
		for i++; i < len(lines) && (strings.TrimSpace(lines[i]) == "" || len(lines[i])-len(strings.TrimLeft(lines[i], " ")) >= indent); i++ {
			if len(lines[i]) >= indent {
				body = append(body, lines[i][indent:])
			} else {
				body = append(body, "")
			}
		}
		i--
		scripts = append(scripts, strings.Join(body, "\n"))
	}
	if len(scripts) == 0 {
		t.Fatal("no run: | script found in action.yml")
	}
	for _, s := range scripts {
		for _, flag := range regexp.MustCompile(`--[a-z][a-z-]+`).FindAllString(s, -1) {
			if !strings.Contains(dispatchUsageFlags, flag+" ") {
				t.Errorf("action.yml passes %s, which dispatch does not define", flag)
			}
		}
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed (scripts/test installs it)")
	}
	for i, s := range scripts {
		p := filepath.Join(t.TempDir(), "script.sh")
		os.WriteFile(p, []byte("#!/usr/bin/env bash\n"+s+"\n"), 0o644)
		if out, err := exec.Command(sc, p).CombinedOutput(); err != nil {
			t.Errorf("script %d of action.yml: shellcheck:\n%s", i, out)
		}
	}
}

// dispatchUsageFlags lists the flags runDispatch defines (each followed by
// a space), kept in step by TestDispatchFlagsListed.
const dispatchUsageFlags = "--endpoint --api-url --github-org --labels --label --runner-group --github-api-url --runner-user --idle-timeout --job-timeout --ttl --job-id --timeout "

func TestDispatchFlagsListed(t *testing.T) {
	src, err := os.ReadFile("dispatch.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`fs\.(?:String|Duration)\("([a-z-]+)"`).FindAllStringSubmatch(string(src), -1) {
		if !strings.Contains(dispatchUsageFlags, "--"+m[1]+" ") {
			t.Errorf("dispatch defines --%s: add it to dispatchUsageFlags", m[1])
		}
	}
}
