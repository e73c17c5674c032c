package jobhandler

import (
	"encoding/json"
	"os"
	"testing"
)

// .runpod/hub.json and tests.json must parse, offer only variables the
// worker reads, and carry test inputs the worker accepts.
func TestRunPodHubFiles(t *testing.T) {
	var hub struct {
		Title  string `json:"title"`
		Type   string `json:"type"`
		Config struct {
			RunsOn string `json:"runsOn"`
			Env    []struct {
				Key string `json:"key"`
			} `json:"env"`
		} `json:"config"`
	}
	b, err := os.ReadFile("../../.runpod/hub.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &hub); err != nil || hub.Title == "" || hub.Type != "serverless" || hub.Config.RunsOn == "" {
		t.Fatalf("hub.json: %v %+v", err, hub)
	}
	known := map[string]bool{}
	for _, f := range Fields {
		known[f.Env] = true
	}
	for _, k := range Settings {
		known[k] = true
	}
	for _, e := range hub.Config.Env {
		if !known[e.Key] {
			t.Errorf("hub.json offers %s, which the worker does not read", e.Key)
		}
	}
	var tests struct {
		Tests []struct {
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		} `json:"tests"`
	}
	b, err = os.ReadFile("../../.runpod/tests.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &tests); err != nil || len(tests.Tests) == 0 {
		t.Fatalf("tests.json: %v", err)
	}
	for _, tc := range tests.Tests {
		if _, err := ParseInput(tc.Input, func(string) string { return "" }); err != nil {
			t.Errorf("tests.json %s: %v", tc.Name, err)
		}
	}
}
