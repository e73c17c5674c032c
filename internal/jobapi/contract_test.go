package jobapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/dispatch"
	"github.com/runpod-workers/worker-github_runner/internal/fitness"
	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/jobhandler"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

const pat = "ghp_CONTRACT0123456789abcdefghijkl"

// field is one input field's test value: how dispatch sets it, its text
// as the endpoint variable, and what the worker's parser must make of it.
type field struct {
	set   func(*dispatch.StartOptions)
	env   string
	check func(*jobhandler.Input) bool
}

var apiURL, _ = github.CanonicalAPIURL("https://ghe.example.com/api/v3", false)

var fields = map[string]field{
	"github_pat": {func(o *dispatch.StartOptions) { o.PAT = secret.New(pat) }, pat,
		func(in *jobhandler.Input) bool { return in.PAT.Reveal() == pat }},
	"github_org": {func(o *dispatch.StartOptions) { o.Scope = "octo/repo" }, "octo/repo",
		func(in *jobhandler.Input) bool { return in.Scope.String() == "octo/repo" }},
	"labels": {func(o *dispatch.StartOptions) { o.Labels = []string{"runpod-1-2-ab", "gpu-big"} }, "runpod-1-2-ab, gpu-big",
		func(in *jobhandler.Input) bool { return slices.Equal(in.Labels, []string{"runpod-1-2-ab", "gpu-big"}) }},
	"runner_group": {func(o *dispatch.StartOptions) { o.RunnerGroup = "gpu pool" }, "gpu pool",
		func(in *jobhandler.Input) bool { return in.RunnerGroup == "gpu pool" }},
	"github_api_url": {func(o *dispatch.StartOptions) { o.APIURL = "https://ghe.example.com/api/v3" }, "https://ghe.example.com/api/v3",
		func(in *jobhandler.Input) bool { return in.APIURL == apiURL }},
	"idle_timeout": {func(o *dispatch.StartOptions) { o.IdleTimeout = 3 * time.Minute }, "3m",
		func(in *jobhandler.Input) bool { return in.IdleTimeout == 3*time.Minute }},
	"job_timeout": {func(o *dispatch.StartOptions) { o.JobTimeout = 90 * time.Minute }, "5400",
		func(in *jobhandler.Input) bool { return in.JobTimeout == 90*time.Minute }},
	"runner_user": {func(o *dispatch.StartOptions) { o.RunnerUser = "root" }, "root",
		func(in *jobhandler.Input) bool { return in.RunnerUser == jobhandler.UserRoot }},
	"mode": {nil, "token",
		func(in *jobhandler.Input) bool { return in.Mode == jobhandler.ModeToken }},
	"gpu_count": {func(o *dispatch.StartOptions) { o.GPU.Count = 2 }, "2",
		func(in *jobhandler.Input) bool { return in.GPUCount == 2 }},
	"min_gpu_memory_mb": {func(o *dispatch.StartOptions) { o.GPU.MinMemoryMiB = 40000 }, "40000",
		func(in *jobhandler.Input) bool { return in.MinGPUMemMiB == 40000 }},
}

// notSentByDispatch are the fields dispatch leaves out, and why.
var notSentByDispatch = map[string]string{
	"mode":                       "runners dispatch starts register just in time (the default)",
	"selftest":                   "RunPod Hub's tests send it, not workflows",
	"github_app_id":              "a workflow passes a PAT; a GitHub App's key stays on the endpoint",
	"github_app_installation_id": "as github_app_id",
	"github_app_private_key":     "as github_app_id",
	"jitconfig":                  "Start sends the endpoint mode's fields; a JIT job's are TestJITContract's",
	"runner_name":                "as jitconfig",
}

// notFromEnvironment are the fields this test does not give through the
// endpoint's variables, and why.
var notFromEnvironment = map[string]string{
	"github_app_id":              "the endpoint's PAT wins over its App (TestGitHubAppCredentials covers them)",
	"github_app_installation_id": "as github_app_id",
	"github_app_private_key":     "as github_app_id",
}

func allowRoot(k string) string {
	if k == jobhandler.EnvAllowRoot {
		return "1"
	}
	return ""
}

// inProcess serves the client's requests with h, in the test's bubble.
type inProcess struct{ h http.Handler }

func (p inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

type arrival struct {
	job *runpod.Job
	in  *jobhandler.Input
	err error
}

// dispatch's start request → the local endpoint API → the worker's input
// parser: every field dispatch sends arrives parsed, and a field of the
// contract that dispatch neither sends nor explicitly leaves out fails.
func TestDispatchToWorkerContract(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		got := make(chan arrival, 1)
		h := runpod.HandlerFunc(func(ctx context.Context, job *runpod.Job, u runpod.Updater) (any, error) {
			in, err := jobhandler.ParseInput(job.Input, allowRoot)
			got <- arrival{job, in, err}
			return map[string]bool{"parsed": err == nil}, err
		})
		api := http.StripPrefix("/v2/ep", runpod.NewAPIServer(h, 1, nil))
		c := &dispatch.Client{APIURL: "https://api.test/v2", Endpoint: "ep", APIKey: secret.New("rpa_CONTRACTKEY"), HTTP: &http.Client{Transport: inProcess{api}}}
		var o dispatch.StartOptions
		for _, f := range fields {
			if f.set != nil {
				f.set(&o)
			}
		}
		j, err := c.Start(context.Background(), o)
		if err != nil || j.Status != jobapi.InQueue {
			t.Fatalf("start: %v %+v", err, j)
		}
		a := <-got
		if a.err != nil {
			t.Fatalf("the worker's parser refused dispatch's input: %v", a.err)
		}
		var sent map[string]json.RawMessage
		if err := json.Unmarshal(a.job.Input, &sent); err != nil {
			t.Fatal(err)
		}
		for _, f := range jobapi.Fields {
			_, wasSent := sent[f.Name]
			if why, ok := notSentByDispatch[f.Name]; ok {
				if wasSent {
					t.Errorf("dispatch sends %s, listed as not sent (%s)", f.Name, why)
				}
				continue
			}
			switch tc, ok := fields[f.Name]; {
			case !ok || tc.set == nil:
				t.Errorf("field %s: dispatch cannot set it and the test has no value for it: add both, or list it in notSentByDispatch", f.Name)
			case !wasSent:
				t.Errorf("dispatch does not send %s", f.Name)
			case !tc.check(a.in):
				t.Errorf("%s arrived as %s and parsed wrong: %+v", f.Name, sent[f.Name], a.in)
			}
		}
		var policy jobapi.Policy
		if err := json.Unmarshal(a.job.Fields["policy"], &policy); err != nil || policy.ExecutionTimeout != (3*time.Minute+90*time.Minute+10*time.Minute).Milliseconds() {
			t.Errorf("policy %s: %v", a.job.Fields["policy"], err)
		}
		synctest.Wait()
		if st, err := c.Status(context.Background(), j.ID); err != nil || st.Status != jobapi.Completed || !st.Status.Terminal() {
			t.Errorf("status: %v %+v", err, st)
		}
	})
}

// Each field's endpoint variable (jobapi.Fields) is the one the worker's
// parser reads.
func TestEnvironmentContract(t *testing.T) {
	env := map[string]string{jobhandler.EnvAllowRoot: "1"}
	for _, f := range jobapi.Fields {
		tc, ok := fields[f.Name]
		_, skip := notFromEnvironment[f.Name]
		switch {
		case f.Env == "" || skip:
		case !ok:
			t.Errorf("field %s (%s): the test has no value for it", f.Name, f.Env)
		default:
			env[f.Env] = tc.env
		}
	}
	in, err := jobhandler.ParseInput([]byte(`{}`), func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the endpoint's variables were refused: %v", err)
	}
	for _, f := range jobapi.Fields {
		if tc, ok := fields[f.Name]; ok && f.Env != "" && !tc.check(in) {
			t.Errorf("%s=%q parsed wrong: %+v", f.Env, env[f.Env], in)
		}
	}
	if !in.FromEndpoint || strings.Contains(strings.Join(in.Labels, ""), pat) {
		t.Errorf("%+v", in)
	}
}

// jitFields are the fields of a job with a JIT config; every other field
// but selftest is refused with it.
var jitFields = map[string]func(*jobhandler.Input) bool{
	"jitconfig": func(in *jobhandler.Input) bool {
		return in.JIT != nil && in.JIT.RunnerID == 42 && in.Mode == jobhandler.ModeJITConfig
	},
	"runner_name":       func(in *jobhandler.Input) bool { return in.JIT.RunnerName == "runpod-jit-1" },
	"idle_timeout":      func(in *jobhandler.Input) bool { return in.IdleTimeout == 3*time.Minute },
	"job_timeout":       func(in *jobhandler.Input) bool { return in.JobTimeout == 90*time.Minute },
	"runner_user":       func(in *jobhandler.Input) bool { return in.RunnerUser == jobhandler.UserRoot },
	"gpu_count":         func(in *jobhandler.Input) bool { return in.GPUCount == 2 },
	"min_gpu_memory_mb": func(in *jobhandler.Input) bool { return in.MinGPUMemMiB == 40000 },
}

// testJIT is a JIT config of GitHub's shape.
func testJIT() string {
	file := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	b, _ := json.Marshal(map[string]string{
		".runner":                file(`{"agentId":42,"agentName":"runpod-jit-1","serverUrl":"https://pipelines.actions.githubusercontent.com/x","gitHubUrl":"https://github.com/octo"}`),
		".credentials":           file(`{"scheme":"OAuth","data":{"clientId":"c"}}`),
		".credentials_rsaparams": file(`{"d":"k"}`),
	})
	return base64.StdEncoding.EncodeToString(b)
}

// dispatch's JIT input → the worker's parser: the fields a JIT job
// carries arrive parsed, dispatch sends no other, and every other field
// of the contract (but selftest) is refused alongside jitconfig, by name.
func TestJITContract(t *testing.T) {
	in := dispatch.JITInput(secret.New(testJIT()), "runpod-jit-1", dispatch.JITOptions{RunnerUser: "root", IdleTimeout: 3 * time.Minute,
		JobTimeout: 90 * time.Minute, GPU: dispatch.GPUNeeds{Count: 2, MinMemoryMiB: 40000}})
	raw, _ := json.Marshal(in)
	got, err := jobhandler.ParseInput(raw, allowRoot)
	if err != nil {
		t.Fatalf("the worker's parser refused dispatch's JIT input: %v", err)
	}
	var sent map[string]json.RawMessage
	json.Unmarshal(raw, &sent)
	for _, f := range jobapi.Fields {
		check, isJIT := jitFields[f.Name]
		_, wasSent := sent[f.Name]
		switch {
		case isJIT && !wasSent:
			t.Errorf("dispatch's JIT input leaves out %s", f.Name)
		case isJIT && !check(got):
			t.Errorf("%s arrived as %s and parsed wrong: %+v", f.Name, sent[f.Name], got)
		case !isJIT && wasSent:
			t.Errorf("dispatch's JIT input carries %s", f.Name)
		case !isJIT && f.Name != "selftest":
			both := fmt.Sprintf(`{"jitconfig": %q, %q: "1"}`, testJIT(), f.Name)
			if _, err := jobhandler.ParseInput([]byte(both), allowRoot); err == nil || !strings.Contains(err.Error(), "jitconfig comes with "+f.Name) {
				t.Errorf("jitconfig with %s: %v", f.Name, err)
			}
		}
	}
}

// The fitness checks read the variables jobapi names for gpu_count and
// min_gpu_memory_mb.
func TestFitnessVariables(t *testing.T) {
	if jobapi.EnvGPUCount != fitness.EnvGPUCount || jobapi.EnvMinGPUMemory != fitness.EnvMinGPUMemory {
		t.Errorf("jobapi %s, %s; fitness %s, %s", jobapi.EnvGPUCount, jobapi.EnvMinGPUMemory, fitness.EnvGPUCount, fitness.EnvMinGPUMemory)
	}
}
