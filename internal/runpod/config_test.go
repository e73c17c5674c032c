package runpod

import (
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigURLs(t *testing.T) {
	c, err := ConfigFromEnv(envOf(map[string]string{
		"RUNPOD_WEBHOOK_GET_JOB":     "https://api.runpod.ai/v2/ep/job-take/$RUNPOD_POD_ID?gpu=NVIDIA+RTX+A5000",
		"RUNPOD_WEBHOOK_POST_OUTPUT": "https://api.runpod.ai/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+RTX+A5000",
		"RUNPOD_WEBHOOK_JOB_STREAM":  "https://api.runpod.ai/v2/ep/job-stream/$RUNPOD_POD_ID/$ID",
		"RUNPOD_WEBHOOK_PING":        "https://api.runpod.ai/v2/ep/ping/$ID",
		"RUNPOD_AI_API_KEY":          "key",
		"RUNPOD_POD_ID":              "pod9",
		"RUNPOD_PING_INTERVAL":       "200",
		"RUNPOD_ENDPOINT_ID":         "ep",
	}))
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.takeURL(false): "https://api.runpod.ai/v2/ep/job-take/pod9?gpu=NVIDIA+RTX+A5000&job_in_progress=0",
		c.takeURL(true):  "https://api.runpod.ai/v2/ep/job-take/pod9?gpu=NVIDIA+RTX+A5000&job_in_progress=1",
		c.stopURL():      "https://api.runpod.ai/v2/ep/job-stop/pod9?gpu=NVIDIA+RTX+A5000",
		jobURL(c.DoneURL, c.PodID, "a/b c", false): "https://api.runpod.ai/v2/ep/job-done/pod9/a%2Fb%20c?gpu=NVIDIA+RTX+A5000&isStream=false",
		jobURL(c.StreamURL, c.PodID, "j", false):   "https://api.runpod.ai/v2/ep/job-stream/pod9/j?isStream=false",
		c.pingURL(nil):                             "https://api.runpod.ai/v2/ep/ping/pod9?runpod_version=" + SDKVersion,
		c.pingURL([]string{"j1", "j2"}):            "https://api.runpod.ai/v2/ep/ping/pod9?job_id=j1%2Cj2&runpod_version=" + SDKVersion,
	} {
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	if c.PingInterval != time.Second {
		t.Errorf("ping interval %v: values under 1s must be raised to 1s", c.PingInterval)
	}
	if !c.JSONLogs {
		t.Error("RUNPOD_ENDPOINT_ID set: JSON logs")
	}
	if s := strings.Join([]string{c.APIKey.String()}, ""); strings.Contains(s, "key") && s != "[redacted]" {
		t.Error("API key printable")
	}
}

func TestConfigErrors(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"take without done": {"RUNPOD_WEBHOOK_GET_JOB": "http://x/job-take/1"},
		"bad interval":      {"RUNPOD_PING_INTERVAL": "soon"},
		"bad url":           {"RUNPOD_WEBHOOK_GET_JOB": "ftp://x", "RUNPOD_WEBHOOK_POST_OUTPUT": "http://x"},
	} {
		if _, err := ConfigFromEnv(envOf(env)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c, err := ConfigFromEnv(envOf(nil))
	if err != nil || c.OnPlatform() || c.PodID == "" {
		t.Errorf("empty environment: %v %+v", err, c)
	}
}

func TestParseTake(t *testing.T) {
	tests := []struct {
		body       string
		jobs, bads int
	}{
		{"", 0, 0}, {"  ", 0, 0}, {"null", 0, 0}, {"not json", 0, 0}, {`"str"`, 0, 0},
		{`{"id":"a","input":{}}`, 1, 0},
		{`{"id":"a","input":"x","webhook":"u"}`, 1, 0},
		{`{"id":"a"}`, 0, 1}, {`{"input":1}`, 0, 1}, {`{"id":5,"input":1}`, 0, 1},
		{`[{"id":"a","input":1},{"id":"b"},{"id":"c","input":[]}]`, 2, 1},
		{`[]`, 0, 0},
	}
	for _, tc := range tests {
		jobs, bad := parseTake([]byte(tc.body))
		if len(jobs) != tc.jobs || len(bad) != tc.bads {
			t.Errorf("%q: %d jobs %d malformed, want %d %d", tc.body, len(jobs), len(bad), tc.jobs, tc.bads)
		}
	}
	jobs, _ := parseTake([]byte(`{"id":"a","input":{"k":1},"webhook":"u"}`))
	if string(jobs[0].Fields["webhook"]) != `"u"` {
		t.Error("unknown fields not kept")
	}
	var in struct{ K int }
	if err := jobs[0].DecodeInput(&in); err != nil || in.K != 1 {
		t.Errorf("DecodeInput: %v %v", err, in)
	}
	jobs, _ = parseTake([]byte(`{"id":"a","input":"a string"}`))
	if err := jobs[0].DecodeInput(&in); err == nil || !strings.Contains(err.Error(), "input must be a JSON object") {
		t.Errorf("DecodeInput of a string: %v", err)
	}
}

func FuzzParseTake(f *testing.F) {
	for _, s := range []string{`{"id":"a","input":{}}`, `[{"id":"a","input":1},{"id":"b"}]`, `null`, ``, `{"id":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		jobs, bad := parseTake(b)
		for _, j := range jobs {
			if j.ID == "" || len(j.Input) == 0 {
				t.Fatalf("job without id or input: %+v", j)
			}
			var v map[string]any
			_ = j.DecodeInput(&v)
		}
		for _, m := range bad {
			if m.reason == "" {
				t.Fatal("malformed without reason")
			}
		}
	})
}
