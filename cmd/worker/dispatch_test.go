package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	apiKey   = "rpa_DISPATCHKEY0123456789"
	ghPAT    = "ghp_DISPATCHPAT0123456789abcdef"
	endpoint = "abc123xyz"
)

// fakeEndpointAPI is RunPod's public endpoint API for one endpoint.
type fakeEndpointAPI struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   []map[string]any
	statuses map[string]string
	fail     []int
	cancels  int
	delay    time.Duration
}

func newFakeAPI(t *testing.T) *fakeEndpointAPI {
	f := &fakeEndpointAPI{statuses: map[string]string{}}
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(f.delay)
			f.mu.Lock()
			if len(f.fail) > 0 {
				code := f.fail[0]
				f.fail = f.fail[1:]
				f.mu.Unlock()
				http.Error(w, `{"error":"injected"}`, code)
				return
			}
			f.mu.Unlock()
			if r.Header.Get("Authorization") != "Bearer "+apiKey {
				http.Error(w, `{"error":"Unauthorized"}`, 401)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /v2/"+endpoint+"/run", auth(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		json.NewDecoder(r.Body).Decode(&b)
		f.mu.Lock()
		f.bodies = append(f.bodies, b)
		id := "job-" + string(rune('a'+len(f.bodies)))
		f.statuses[id] = "IN_QUEUE"
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "IN_QUEUE"})
	}))
	mux.HandleFunc("GET /v2/"+endpoint+"/status/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		st, ok := f.statuses[r.PathValue("id")]
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"job not found"}`, 404)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "status": st})
	}))
	mux.HandleFunc("POST /v2/"+endpoint+"/cancel/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.cancels++
		f.statuses[r.PathValue("id")] = "CANCELLED"
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "status": "CANCELLED"})
	}))
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func dispatchRun(t *testing.T, f *fakeEndpointAPI, env map[string]string, args ...string) (int, string, string, map[string]string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "github_output")
	base := map[string]string{"RUNPOD_API_KEY": apiKey, "GITHUB_PAT": ghPAT, "RUNPOD_API_URL": f.URL + "/v2",
		"GITHUB_OUTPUT": out, "GITHUB_RUN_ID": "987", "GITHUB_RUN_ATTEMPT": "2"}
	for k, v := range env {
		base[k] = v
	}
	var so, se bytes.Buffer
	code := runDispatch(args, &so, &se, func(k string) string { return base[k] })
	outputs := map[string]string{}
	b, _ := os.ReadFile(out)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			outputs[k] = v
		}
	}
	for _, s := range []string{apiKey, ghPAT} {
		if strings.Contains(so.String()+se.String()+string(b), s) {
			t.Errorf("a secret was printed: %s %s", so.String(), se.String())
		}
	}
	return code, so.String(), se.String(), outputs
}

func TestDispatchStartAndStop(t *testing.T) {
	f := newFakeAPI(t)
	code, _, stderr, out := dispatchRun(t, f, nil, "start", "--endpoint", endpoint, "--github-org", "octo/repo", "--labels", "gpu-big", "--idle-timeout", "3m", "--job-timeout", "1h", "--runner-user", "root")
	if code != 0 || out["job-id"] != "job-b" || !strings.HasPrefix(out["label"], "runpod-987-2-") {
		t.Fatalf("exit %d outputs %v\n%s", code, out, stderr)
	}
	in := f.bodies[0]["input"].(map[string]any)
	if in["github_org"] != "octo/repo" || in["github_pat"] != ghPAT || in["idle_timeout"] != 180.0 || in["job_timeout"] != 3600.0 || in["runner_user"] != "root" {
		t.Errorf("input %v", in)
	}
	if ls := in["labels"].([]any); len(ls) != 2 || ls[0] != out["label"] || ls[1] != "gpu-big" {
		t.Errorf("labels %v", ls)
	}
	if pol := f.bodies[0]["policy"].(map[string]any); pol["executionTimeout"] != float64((3*time.Minute + time.Hour + 10*time.Minute).Milliseconds()) {
		t.Errorf("policy %v", pol)
	}
	code, _, _, out = dispatchRun(t, f, nil, "stop", "--endpoint", endpoint, "--job-id", "job-b")
	if code != 0 || out["status"] != "CANCELLED" || f.cancels != 1 {
		t.Fatalf("stop: %d %v cancels %d", code, out, f.cancels)
	}
	// A job that already ended is not cancelled again.
	f.statuses["job-b"] = "COMPLETED"
	code, _, stderr, out = dispatchRun(t, f, nil, "stop", "--endpoint", endpoint, "--job-id", "job-b")
	if code != 0 || out["status"] != "COMPLETED" || f.cancels != 1 || !strings.Contains(stderr, "already ended") {
		t.Fatalf("stop of a finished job: %d %v %s", code, out, stderr)
	}
}

func TestDispatchErrors(t *testing.T) {
	f := newFakeAPI(t)
	code, _, stderr, _ := dispatchRun(t, f, map[string]string{"RUNPOD_API_KEY": "rpa_wrongkey_000000"}, "start", "--endpoint", endpoint, "--github-org", "o")
	if code != 1 || !strings.Contains(stderr, "API key was rejected") || strings.Contains(stderr, "rpa_wrongkey") {
		t.Errorf("bad key: %d %s", code, stderr)
	}
	code, _, stderr, _ = dispatchRun(t, f, nil, "start", "--endpoint", "nope", "--github-org", "o")
	if code != 1 || !strings.Contains(stderr, "no such endpoint") {
		t.Errorf("unknown endpoint: %d %s", code, stderr)
	}
	code, _, stderr, _ = dispatchRun(t, f, nil, "stop", "--endpoint", endpoint, "--job-id", "missing")
	if code != 1 || !strings.Contains(stderr, "HTTP 404") {
		t.Errorf("unknown job: %d %s", code, stderr)
	}
	code, _, stderr, _ = dispatchRun(t, f, map[string]string{"RUNPOD_API_KEY": ""}, "start", "--endpoint", endpoint, "--github-org", "o")
	if code != 1 || !strings.Contains(stderr, "no RunPod API key") {
		t.Errorf("no key: %d %s", code, stderr)
	}
	if code, _, _, _ = dispatchRun(t, f, nil, "start", "--endpoint", endpoint, "--bogus"); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
	if code, _, _, _ = dispatchRun(t, f, nil, "frobnicate"); code != 2 {
		t.Errorf("bad verb: exit %d", code)
	}
}

func TestDispatchRetriesAndTimesOut(t *testing.T) {
	f := newFakeAPI(t)
	// A 429 is a refusal: /run is sent again. A 500 may come after RunPod
	// created the job: /run is not sent again (a second billed runner).
	f.fail = []int{429, 429}
	start := time.Now()
	code, _, stderr, out := dispatchRun(t, f, nil, "start", "--endpoint", endpoint, "--github-org", "o")
	if code != 0 || out["job-id"] == "" {
		t.Fatalf("after two 429s: %d %s", code, stderr)
	}
	if time.Since(start) < 2*time.Second {
		t.Error("retries did not wait")
	}
	f.fail = []int{500}
	code, _, stderr, _ = dispatchRun(t, f, nil, "start", "--endpoint", endpoint, "--github-org", "o")
	if code != 1 || !strings.Contains(stderr, "may have created the job") {
		t.Errorf("after a 500: %d %s", code, stderr)
	}
	f.delay = 3 * time.Second
	start = time.Now()
	code, _, stderr, _ = dispatchRun(t, f, nil, "start", "--endpoint", endpoint, "--github-org", "o", "--timeout", "1s")
	if code != 1 || time.Since(start) > 2500*time.Millisecond || !strings.Contains(stderr, "deadline exceeded") {
		t.Errorf("timeout: %d after %v: %s", code, time.Since(start), stderr)
	}
}
