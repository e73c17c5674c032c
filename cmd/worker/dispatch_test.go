package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
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
	errs     map[string]string // a FAILED job's error
	fail     []int
	cancels  int
	delay    time.Duration
	// onRun, when set, is what the worker does with a job once submitted.
	onRun func(id string, input map[string]any)
	// echo makes /run refuse the job with a 400 quoting its body.
	echo bool
}

func newFakeAPI(t *testing.T) *fakeEndpointAPI {
	f := &fakeEndpointAPI{statuses: map[string]string{}, errs: map[string]string{}}
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
		if f.echo {
			raw, _ := io.ReadAll(r.Body)
			http.Error(w, `{"error":"invalid request: `+string(raw)+`"}`, 400)
			return
		}
		var b map[string]any
		json.NewDecoder(r.Body).Decode(&b)
		f.mu.Lock()
		f.bodies = append(f.bodies, b)
		id := "job-" + string(rune('a'+len(f.bodies)))
		f.statuses[id] = "IN_QUEUE"
		on := f.onRun
		f.mu.Unlock()
		if in, ok := b["input"].(map[string]any); ok && on != nil {
			go on(id, in)
		}
		json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "IN_QUEUE"})
	}))
	mux.HandleFunc("GET /v2/"+endpoint+"/health", auth(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"jobs":{"inQueue":0},"workers":{"idle":1,"running":0}}`)
	}))
	mux.HandleFunc("GET /v2/"+endpoint+"/status/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		st, ok := f.statuses[r.PathValue("id")]
		msg := f.errs[r.PathValue("id")]
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"job not found"}`, 404)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "status": st, "error": msg})
	}))
	mux.HandleFunc("POST /v2/"+endpoint+"/cancel/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if _, ok := f.statuses[r.PathValue("id")]; !ok {
			f.mu.Unlock()
			http.Error(w, `{"error":"job not found"}`, 404)
			return
		}
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
	code, _, stderr, out := dispatchRun(t, f, nil, "start", "--registration", "endpoint", "--endpoint", endpoint, "--github-org", "octo/repo", "--labels", "gpu-big", "--idle-timeout", "3m", "--job-timeout", "1h", "--runner-user", "root")
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
	if code != 0 || out["status"] != "stopped" || out["job-ids"] != `["job-b"]` || f.cancels != 1 {
		t.Fatalf("stop: %d %v cancels %d", code, out, f.cancels)
	}
	// A job that already ended is not cancelled again.
	f.statuses["job-b"] = "COMPLETED"
	code, _, stderr, out = dispatchRun(t, f, nil, "stop", "--endpoint", endpoint, "--job-id", "job-b")
	if code != 0 || f.cancels != 1 || !strings.Contains(stderr, "already ended (COMPLETED)") {
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
	// A job RunPod forgot (it ended, its ttl passed) is stopped: 404 from
	// an endpoint that answers /health.
	code, _, stderr, _ = dispatchRun(t, f, nil, "stop", "--endpoint", endpoint, "--job-id", "missing")
	if code != 0 || !strings.Contains(stderr, "no longer knows it") {
		t.Errorf("job RunPod forgot: %d %s", code, stderr)
	}
	code, _, stderr, _ = dispatchRun(t, f, nil, "stop", "--endpoint", "nope", "--job-id", "missing")
	if code != 1 || !strings.Contains(stderr, "HTTP 404") {
		t.Errorf("unknown endpoint: %d %s", code, stderr)
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
	code, _, stderr, out := dispatchRun(t, f, nil, "start", "--registration", "endpoint", "--endpoint", endpoint, "--github-org", "o")
	if code != 0 || out["job-id"] == "" {
		t.Fatalf("after two 429s: %d %s", code, stderr)
	}
	if time.Since(start) < 2*time.Second {
		t.Error("retries did not wait")
	}
	f.fail = []int{500}
	code, _, stderr, _ = dispatchRun(t, f, nil, "start", "--registration", "endpoint", "--endpoint", endpoint, "--github-org", "o")
	if code != 1 || !strings.Contains(stderr, "may have created the job") {
		t.Errorf("after a 500: %d %s", code, stderr)
	}
	f.delay = 3 * time.Second
	start = time.Now()
	code, _, stderr, _ = dispatchRun(t, f, nil, "start", "--registration", "endpoint", "--endpoint", endpoint, "--github-org", "o", "--timeout", "1s")
	if code != 1 || time.Since(start) > 2500*time.Millisecond || !strings.Contains(stderr, "deadline exceeded") {
		t.Errorf("timeout: %d after %v: %s", code, time.Since(start), stderr)
	}
}

// jitEnv points dispatch at a fake GitHub that accepts ghPAT, and
// makes the fake endpoint's worker bring each runner online.
func jitEnv(t *testing.T, f *fakeEndpointAPI) (*githubtest.GitHub, map[string]string) {
	gh := githubtest.New(ghPAT)
	t.Cleanup(gh.Close)
	f.onRun = func(id string, in map[string]any) {
		f.mu.Lock()
		f.statuses[id] = "IN_PROGRESS"
		f.mu.Unlock()
		for _, r := range gh.Registered() {
			if r.Name == in["runner_name"] {
				resp, err := http.Post(fmt.Sprintf("%s/_fake/runners/%d/online", gh.URL, r.ID), "", nil)
				if err == nil {
					resp.Body.Close()
				}
			}
		}
	}
	return gh, map[string]string{"GITHUB_API_URL": gh.URL, "WGR_TEST_ALLOW_HTTP_LOOPBACK": "1"}
}

// registration jit: the runners are minted here, RunPod gets only their
// JIT configs, the outputs carry what stop needs (JSON lists for
// fromJSON), and stop cleans both sides.
func TestDispatchJITStartAndStop(t *testing.T) {
	f := newFakeAPI(t)
	gh, env := jitEnv(t, f)
	code, _, stderr, out := dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo", "--count", "2", "--startup-timeout", "20s")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var labels, jobs []string
	var ids []int64
	for k, v := range map[string]any{"labels": &labels, "job-ids": &jobs, "runner-ids": &ids} {
		if err := json.Unmarshal([]byte(out[k]), v); err != nil {
			t.Fatalf("output %s=%q is not a JSON list: %v", k, out[k], err)
		}
	}
	if len(labels) != 2 || !strings.HasPrefix(labels[0], "runpod-987-2-") || labels[1] != strings.TrimSuffix(labels[0], "-1")+"-2" || len(jobs) != 2 || len(ids) != 2 {
		t.Fatalf("outputs %v", out)
	}
	if _, ok := out["label"]; ok {
		t.Errorf("label output for two runners: %v", out)
	}
	for i, r := range gh.Registered() {
		if now, _ := gh.Runner(r.ID); len(r.Labels) != 1 || r.Labels[0] != labels[i] || r.ID != ids[i] || now.Status != "online" {
			t.Errorf("runner %+v, want only label %s, online", r, labels[i])
		}
	}
	for _, b := range f.bodies {
		in := b["input"].(map[string]any)
		if _, ok := in["github_pat"]; ok || in["jitconfig"] == nil || in["github_org"] != nil {
			t.Errorf("input %v: want the JIT config and no credential", in)
		}
	}
	for _, jit := range gh.Issued() {
		if strings.Contains(stderr+fmt.Sprint(out), jit) {
			t.Error("a JIT config was printed")
		}
	}
	code, _, stderr, _ = dispatchRun(t, f, env, "stop", "--endpoint", endpoint, "--github-org", "octo", "--job-ids", out["job-ids"], "--runner-ids", out["runner-ids"])
	if code != 0 || len(gh.Runners()) != 0 || f.cancels != 2 || strings.Count(stderr, ": deleted") != 2 {
		t.Fatalf("stop: exit %d, runners %v, cancels %d\n%s", code, gh.Runners(), f.cancels, stderr)
	}
	// Again: everything is gone already, which is success.
	code, _, stderr, _ = dispatchRun(t, f, env, "stop", "--endpoint", endpoint, "--github-org", "octo", "--job-ids", out["job-ids"], "--runner-ids", out["runner-ids"])
	if code != 0 || !strings.Contains(stderr, "already removed") || !strings.Contains(stderr, "already ended (CANCELLED)") {
		t.Errorf("second stop: %d\n%s", code, stderr)
	}
	// A start that failed left nothing, and no ids: stop has nothing to do.
	if code, _, stderr, _ = dispatchRun(t, f, env, "stop", "--endpoint", endpoint, "--job-ids", "", "--runner-ids", ""); code != 0 || !strings.Contains(stderr, "nothing to stop") {
		t.Errorf("stop without ids: %d %s", code, stderr)
	}
}

// One runner: label and job-id as before, for runs-on: ${{ ...label }};
// a GitHub App's credential works as a PAT does; what jit refuses.
func TestDispatchJITOptions(t *testing.T) {
	f := newFakeAPI(t)
	_, env := jitEnv(t, f)
	code, _, stderr, out := dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo", "--label", "my-label")
	if code != 0 || out["label"] != "my-label" || out["labels"] != `["my-label"]` || out["job-id"] == "" || out["status"] != "online" {
		t.Fatalf("exit %d outputs %v\n%s", code, out, stderr)
	}
	for args, want := range map[string]string{
		"--labels gpu":       "exactly one label",
		"--count 0":          "--count must be",
		"--label bad/label":  "letters, digits",
		"--runner-ids x,1":   "not a runner id",
		"--registration foo": "jit or endpoint",
	} {
		verb := "start"
		if strings.HasPrefix(args, "--runner-ids") {
			verb = "stop"
		}
		code, _, stderr, _ := dispatchRun(t, f, env, append([]string{verb, "--endpoint", endpoint, "--github-org", "octo"}, strings.Fields(args)...)...)
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, want %q in\n%s", args, code, want, stderr)
		}
	}
	noCred := map[string]string{"GITHUB_PAT": ""}
	for k, v := range env {
		noCred[k] = v
	}
	if code, _, stderr, _ := dispatchRun(t, f, noCred, "start", "--endpoint", endpoint, "--github-org", "octo"); code != 1 || !strings.Contains(stderr, "no GitHub credential") {
		t.Errorf("no credential: %d %s", code, stderr)
	}
}

// An answer that quotes the request (a 400 echoing the job input) puts
// neither the PAT (registration endpoint sends it) nor a JIT config in
// the log: dispatchRun fails the test on any secret printed.
func TestDispatchRedactsEchoedInput(t *testing.T) {
	f := newFakeAPI(t)
	gh, env := jitEnv(t, f)
	f.echo = true
	code, _, stderr, _ := dispatchRun(t, f, nil, "start", "--registration", "endpoint", "--endpoint", endpoint, "--github-org", "octo")
	if code != 1 || !strings.Contains(stderr, "HTTP 400") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
	code, _, stderr, _ = dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo")
	if code != 1 || !strings.Contains(stderr, "HTTP 400") || len(gh.Runners()) != 0 {
		t.Errorf("exit %d, runners %v\n%s", code, gh.Runners(), stderr)
	}
	for _, jit := range gh.Issued() {
		if strings.Contains(stderr, jit[:32]) {
			t.Errorf("a JIT config was printed:\n%s", stderr)
		}
	}
}

// --gpu-count and --min-gpu-memory-mb travel as gpu_count and
// min_gpu_memory_mb in both registrations; out of range, they are
// refused before anything is registered.
func TestDispatchGPUNeeds(t *testing.T) {
	f := newFakeAPI(t)
	gh, env := jitEnv(t, f)
	code, _, stderr, _ := dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo", "--gpu-count", "2", "--min-gpu-memory-mb", "40000")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	code, _, stderr, _ = dispatchRun(t, f, nil, "start", "--registration", "endpoint", "--endpoint", endpoint, "--github-org", "octo", "--gpu-count", "1")
	if code != 0 || len(f.bodies) != 2 {
		t.Fatalf("exit %d, %d jobs\n%s", code, len(f.bodies), stderr)
	}
	jit, ep := f.bodies[0]["input"].(map[string]any), f.bodies[1]["input"].(map[string]any)
	if jit["gpu_count"] != 2.0 || jit["min_gpu_memory_mb"] != 40000.0 || ep["gpu_count"] != 1.0 {
		t.Errorf("inputs %v and %v", jit, ep)
	}
	if _, ok := ep["min_gpu_memory_mb"]; ok {
		t.Errorf("min_gpu_memory_mb sent unset: %v", ep)
	}
	for _, args := range [][]string{{"--gpu-count", "65"}, {"--gpu-count", "-1"}, {"--min-gpu-memory-mb", "-5"}, {"--unfit-retries", "11"}} {
		n := len(gh.Registered())
		code, _, stderr, _ := dispatchRun(t, f, env, append([]string{"start", "--endpoint", endpoint, "--github-org", "octo"}, args...)...)
		if code == 0 || len(gh.Registered()) != n || !strings.Contains(stderr, "0 ") {
			t.Errorf("%v: exit %d, %d runners registered\n%s", args, code, len(gh.Registered())-n, stderr)
		}
	}
}

// A RunPod job that failed on an unfit worker is submitted again
// (--unfit-retries, default 2); with --unfit-retries 0 start fails at once.
func TestDispatchUnfitRetries(t *testing.T) {
	f := newFakeAPI(t)
	gh, env := jitEnv(t, f)
	online := f.onRun
	report, _ := json.Marshal(jobapi.ErrorReport{ErrorType: jobapi.UnfitErrorType, ErrorMessage: "host unfit: the driver supports CUDA 12.2",
		WorkerID: "pod-7", Unfit: map[string]any{"problems": []string{"the driver supports CUDA 12.2, the image needs 12.8"}}})
	var jobs int
	f.onRun = func(id string, in map[string]any) {
		f.mu.Lock()
		jobs++
		first := jobs == 1
		if first {
			f.statuses[id], f.errs[id] = "FAILED", string(report)
		}
		f.mu.Unlock()
		if !first {
			online(id, in)
		}
	}
	code, _, stderr, out := dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo")
	if code != 0 || len(f.bodies) != 2 || out["job-id"] != "job-c" || !strings.Contains(stderr, "pod-7") ||
		!strings.Contains(stderr, "CUDA 12.2, the image needs 12.8") || !strings.Contains(stderr, "unfit retry 1 of 2") {
		t.Fatalf("exit %d, %d jobs, outputs %v\n%s", code, len(f.bodies), out, stderr)
	}
	f.mu.Lock()
	jobs = 0
	f.mu.Unlock()
	code, _, stderr, _ = dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo", "--unfit-retries", "0")
	if code != 1 || len(f.bodies) != 3 || !strings.Contains(stderr, "its only attempt (unfit retries: 0)") || !strings.Contains(stderr, "CUDA 12.2") {
		t.Errorf("exit %d, %d jobs\n%s", code, len(f.bodies), stderr)
	}
	if n := len(gh.Runners()); n != 1 {
		t.Errorf("%d runners left, want the first start's only", n)
	}
}

// start outputs the scope the runners are in; stop given that scope and
// another github-org refuses, instead of reading GitHub's 404 from the
// wrong scope as "already removed" and leaving the runner.
func TestDispatchStopRefusesAnotherScope(t *testing.T) {
	f := newFakeAPI(t)
	gh, env := jitEnv(t, f)
	code, _, stderr, out := dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo", "--label", "my-label")
	if code != 0 || out["scope"] != "octo" {
		t.Fatalf("exit %d, outputs %v\n%s", code, out, stderr)
	}
	code, _, stderr, _ = dispatchRun(t, f, env, "stop", "--endpoint", endpoint, "--github-org", "octo/repo", "--scope", out["scope"],
		"--job-ids", out["job-ids"], "--runner-ids", out["runner-ids"])
	if code == 0 || !strings.Contains(stderr, "registered in octo") || len(gh.Runners()) != 1 {
		t.Fatalf("stop in another scope: exit %d, runners %v\n%s", code, gh.Runners(), stderr)
	}
	// The scope alone is enough.
	code, _, stderr, _ = dispatchRun(t, f, env, "stop", "--endpoint", endpoint, "--scope", out["scope"], "--job-ids", out["job-ids"], "--runner-ids", out["runner-ids"])
	if code != 0 || len(gh.Runners()) != 0 {
		t.Fatalf("stop: exit %d, runners %v\n%s", code, gh.Runners(), stderr)
	}
}

// The runners' and jobs' ids reach GITHUB_OUTPUT as soon as they exist,
// so that the stop job (if: always()) can finish a cleanup that a
// cancelled start cut short.
func TestDispatchJITWritesIDsBeforeWaiting(t *testing.T) {
	f := newFakeAPI(t)
	gh, env := jitEnv(t, f)
	f.onRun = nil // never online
	code, _, stderr, out := dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo", "--startup-timeout", "300ms")
	if code != 1 || !strings.Contains(stderr, "startup timeout") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var ids []int64
	var jobs []string
	if json.Unmarshal([]byte(out["runner-ids"]), &ids) != nil || json.Unmarshal([]byte(out["job-ids"]), &jobs) != nil ||
		len(ids) != 1 || len(jobs) != 1 || out["scope"] != "octo" {
		t.Fatalf("outputs %v", out)
	}
	if out["status"] == "online" || len(gh.Runners()) != 0 {
		t.Errorf("outputs %v, runners %v", out, gh.Runners())
	}
}

// GITHUB_OUTPUT cannot be written: start fails and leaves nothing behind
// (the workflow would never learn the runners' ids), whether that shows
// before the RunPod jobs are submitted or only at the end.
func TestDispatchJITCleansUpWhenOutputsFail(t *testing.T) {
	f := newFakeAPI(t)
	gh, env := jitEnv(t, f)
	env["GITHUB_OUTPUT"] = t.TempDir() // a directory: not writable as a file
	code, _, stderr, _ := dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo")
	if code != 1 || !strings.Contains(stderr, "GITHUB_OUTPUT") || len(gh.Runners()) != 0 || len(f.bodies) != 0 {
		t.Fatalf("exit %d, runners %v, %d RunPod jobs\n%s", code, gh.Runners(), len(f.bodies), stderr)
	}
	out := filepath.Join(t.TempDir(), "output")
	env["GITHUB_OUTPUT"] = out
	online := f.onRun
	f.onRun = func(id string, in map[string]any) {
		time.Sleep(200 * time.Millisecond) // start wrote the ids and waits
		os.Remove(out)
		os.Mkdir(out, 0o755)
		online(id, in)
	}
	code, _, stderr, _ = dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo")
	if code != 1 || !strings.Contains(stderr, "GITHUB_OUTPUT") || len(gh.Runners()) != 0 || f.cancels != 1 {
		t.Fatalf("exit %d, runners %v, %d cancels\n%s", code, gh.Runners(), f.cancels, stderr)
	}
}

// --timeout must be positive.
func TestDispatchTimeoutMustBePositive(t *testing.T) {
	f := newFakeAPI(t)
	for _, v := range []string{"0", "-1s"} {
		code, _, stderr, _ := dispatchRun(t, f, nil, "stop", "--endpoint", endpoint, "--job-id", "job-x", "--timeout", v)
		if code != 2 || !strings.Contains(stderr, "--timeout must be positive") {
			t.Errorf("--timeout %s: exit %d\n%s", v, code, stderr)
		}
	}
}

// registration endpoint: a label or a RunPod answer with a line break
// cannot inject outputs into GITHUB_OUTPUT.
func TestDispatchOutputsRefuseLineBreaks(t *testing.T) {
	f := newFakeAPI(t)
	code, _, stderr, out := dispatchRun(t, f, nil, "start", "--registration", "endpoint", "--endpoint", endpoint, "--github-org", "o", "--label", "x\nrunner-ids=[1]")
	if code == 0 || out["runner-ids"] != "" || len(f.bodies) != 0 || !strings.Contains(stderr, "--label") {
		t.Errorf("label with a line break: exit %d, outputs %v, %d jobs\n%s", code, out, len(f.bodies), stderr)
	}
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"id":"job-1\nstatus=online","status":"IN_QUEUE\r\nscope=evil"}`)
	}))
	defer odd.Close()
	code, _, stderr, out = dispatchRun(t, f, map[string]string{"RUNPOD_API_URL": odd.URL + "/v2"}, "start", "--registration", "endpoint", "--endpoint", endpoint, "--github-org", "o")
	if code == 0 || out["status"] == "online" || out["scope"] != "" || !strings.Contains(stderr, "line break") {
		t.Errorf("answer with line breaks: exit %d, outputs %v\n%s", code, out, stderr)
	}
}

// SIGINT while start waits (the workflow was cancelled: the runner
// signals the step, and kills it 10 s later): start cancels the RunPod
// job and deletes the runner in time, and the outputs already hold the
// ids for the stop job.
func TestDispatchJITCleansUpOnSIGINT(t *testing.T) {
	f := newFakeAPI(t)
	gh, env := jitEnv(t, f)
	f.onRun = func(string, map[string]any) {} // never online
	keep := make(chan os.Signal, 1)           // the test process survives the signal
	signal.Notify(keep, os.Interrupt)
	defer signal.Stop(keep)
	go func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			f.mu.Lock()
			n := len(f.bodies)
			f.mu.Unlock()
			if n == 2 {
				time.Sleep(100 * time.Millisecond) // waiting now
				syscall.Kill(os.Getpid(), syscall.SIGINT)
				return
			}
		}
	}()
	start := time.Now()
	code, _, stderr, out := dispatchRun(t, f, env, "start", "--endpoint", endpoint, "--github-org", "octo", "--count", "2", "--startup-timeout", "1m")
	if code != 1 || !strings.Contains(stderr, "stopped while waiting") || time.Since(start) > 9*time.Second {
		t.Fatalf("exit %d after %v\n%s", code, time.Since(start), stderr)
	}
	if len(gh.Runners()) != 0 || f.cancels != 2 || out["runner-ids"] == "" || out["scope"] != "octo" {
		t.Errorf("runners %v, %d cancels, outputs %v\n%s", gh.Runners(), f.cancels, out, stderr)
	}
}
