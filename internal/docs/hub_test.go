package docs

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"golang.org/x/mod/semver"
)

type hubEnv struct {
	Key   string `json:"key"`
	Input struct {
		Name        string `json:"name"`
		Type        string `json:"type"`
		Description string `json:"description"`
		Default     any    `json:"default"`
		Advanced    bool   `json:"advanced"`
	} `json:"input"`
}

type hubFile struct {
	Title    string `json:"title"`
	Type     string `json:"type"`
	Category string `json:"category"`
	Config   struct {
		RunsOn              string   `json:"runsOn"`
		AllowedCudaVersions []string `json:"allowedCudaVersions"`
		Presets             []struct {
			Name     string            `json:"name"`
			Defaults map[string]string `json:"defaults"`
		} `json:"presets"`
		Env []hubEnv `json:"env"`
	} `json:"config"`
}

func readHub(t *testing.T) hubFile {
	t.Helper()
	b, err := os.ReadFile("../../.runpod/hub.json")
	if err != nil {
		t.Fatal(err)
	}
	var h hubFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&h); err != nil {
		t.Fatalf(".runpod/hub.json: %v", err)
	}
	return h
}

// The RunPod Hub listing: a category that fits a CI runner, CUDA versions
// up to the newest drivers (more hosts to run on: the image's CUDA 12.6
// runtime runs on any newer driver), a CPU preset, and credentials through
// RunPod secrets, never typed into a plain environment value.
func TestHubJSON(t *testing.T) {
	h := readHub(t)
	if h.Type != "serverless" || h.Category == "" || h.Category == "language" {
		t.Errorf("type %q, category %q: want serverless and a category that fits a CI runner", h.Type, h.Category)
	}
	newest := ""
	for _, v := range h.Config.AllowedCudaVersions {
		if newest == "" || semver.Compare("v"+v, "v"+newest) > 0 {
			newest = v
		}
	}
	if semver.Compare("v"+newest, "v13.0") < 0 {
		t.Errorf("allowedCudaVersions %v stop at %s: include the newer ones (13.x) for availability", h.Config.AllowedCudaVersions, newest)
	}
	cpu := false
	for _, p := range h.Config.Presets {
		cpu = cpu || p.Defaults["WORKER_FLAVOUR"] == "cpu"
	}
	if !cpu {
		t.Errorf("no CPU preset (WORKER_FLAVOUR=cpu): %+v", h.Config.Presets)
	}
	secrets := map[string]bool{"GITHUB_PAT": true, "GITHUB_APP_PRIVATE_KEY": true}
	seen := map[string]bool{}
	for _, e := range h.Config.Env {
		seen[e.Key] = true
		if !secrets[e.Key] {
			continue
		}
		// Empty is the recommended setup (jobs bring JIT configs); a value
		// is only ever the RunPod secret reference, never a plain secret.
		if d, _ := e.Input.Default.(string); d != "" && d != "{{ RUNPOD_SECRET_"+e.Key+" }}" {
			t.Errorf("%s defaults to %q, want empty or the RunPod secret reference {{ RUNPOD_SECRET_%s }}", e.Key, d, e.Key)
		}
		if !strings.Contains(e.Input.Description, "RunPod secret") || !strings.Contains(e.Input.Description, "{{ RUNPOD_SECRET_"+e.Key+" }}") {
			t.Errorf("%s's description does not say to store it as a RunPod secret and how to refer to it", e.Key)
		}
	}
	for k := range secrets {
		if !seen[k] {
			t.Errorf("hub.json does not offer %s", k)
		}
	}
}

// Every variable hub.json sets is one README.md documents (the worker
// reads it), so the Hub's form cannot drift from the worker.
func TestHubVariablesAreDocumented(t *testing.T) {
	readme := readDoc(t, "README.md")
	for _, e := range readHub(t).Config.Env {
		if !strings.Contains(readme, "`"+e.Key+"`") {
			t.Errorf("hub.json sets %s, which README.md does not document", e.Key)
		}
	}
}

// The files the seed promised its users exist: an MIT licence, a guide
// for contributors, the usage guide and a Chinese README, and the root
// Dockerfile the quick start and the Hub build.
func TestPromisedFilesExist(t *testing.T) {
	for file, want := range map[string]string{
		"LICENSE":         "MIT License",
		"CONTRIBUTING.md": "scripts/devenv",
		"docs/usage.md":   "",
		"README_CN.md":    "",
		"Dockerfile":      "ARG BUILD_TYPE=gpu",
		".dockerignore":   "!cmd/worker/",
	} {
		b, err := os.ReadFile("../../" + file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not say %q", file, want)
		}
	}
}
