package jobapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fields lists every field of Input, in order, each with its own
// variable: a field added to one only fails here.
func TestFieldsMatchInput(t *testing.T) {
	typ := reflect.TypeFor[Input]()
	if typ.NumField() != len(Fields) {
		t.Errorf("Input has %d fields, Fields lists %d", typ.NumField(), len(Fields))
	}
	envs := map[string]bool{}
	for i := range min(typ.NumField(), len(Fields)) {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if tag != Fields[i].Name {
			t.Errorf("Input field %d is %q, Fields says %q", i, tag, Fields[i].Name)
		}
		if e := Fields[i].Env; e != "" && envs[e] {
			t.Errorf("%s backs two fields", e)
		}
		envs[Fields[i].Env] = true
	}
}

func TestStatusAndPolicy(t *testing.T) {
	for s, want := range map[Status]bool{InQueue: false, InProgress: false, Completed: true, Failed: true, Cancelled: true, TimedOut: true, "": false} {
		if s.Terminal() != want {
			t.Errorf("%q.Terminal() = %v", s, !want)
		}
	}
	if p := NewPolicy(0, -time.Second); p != nil {
		t.Errorf("no bounds: %+v", p)
	}
	if p := NewPolicy(time.Minute, 2*time.Second); p == nil || p.ExecutionTimeout != 60000 || p.TTL != 2000 {
		t.Errorf("policy %+v", p)
	}
	if String("") != nil || *String("x") != "x" || Seconds(0) != nil || string(Seconds(90*time.Second)) != "90" || string(List(nil)) != "null" {
		t.Error("field helpers")
	}
}

// An unfit host's error parses; any other error does not; the problems
// come out one line each, bounded.
func TestParseErrorReport(t *testing.T) {
	good := `{"error_type":"UnfitError","error_message":"host unfit: no GPU","hostname":"h","worker_id":"pod-1",` +
		`"runpod_version":"1.12.0","keep_worker":true,"unfit":{"gpus":[],"problems":["no NVIDIA device","disk\n::error::x"]}}`
	r, ok := ParseErrorReport("  " + good)
	if !ok || r.WorkerID != "pod-1" || !r.KeepWorker || r.ErrorMessage != "host unfit: no GPU" {
		t.Fatalf("%+v %v", r, ok)
	}
	if p := r.Problems(); len(p) != 2 || p[0] != "no NVIDIA device" || p[1] != "disk ::error::x" {
		t.Errorf("problems %q", p)
	}
	for _, s := range []string{"", "the workflow job failed", `{"error_type":"ValueError","error_message":"x","unfit":{}}`,
		`{"error_type":"UnfitError","error_message":"x"}`, `{"error_type":"UnfitError","unfit":`, `["UnfitError"]`} {
		if r, ok := ParseErrorReport(s); ok || r != nil {
			t.Errorf("%q parsed as an unfit report: %+v", s, r)
		}
	}
	// A report left out (a string) gives the message; a hostile one is bounded.
	r, _ = ParseErrorReport(`{"error_type":"UnfitError","error_message":"no\rGPU","unfit":"the report was left out"}`)
	if p := r.Problems(); len(p) != 1 || p[0] != "no GPU" {
		t.Errorf("problems %q", p)
	}
	many := make([]string, 20)
	for i := range many {
		many[i] = strings.Repeat("é", 400)
	}
	b, _ := json.Marshal(ErrorReport{ErrorType: UnfitErrorType, Unfit: map[string]any{"problems": many}})
	r, _ = ParseErrorReport(string(b))
	p := r.Problems()
	if len(p) != 9 || p[8] != "(and 12 more)" || len(p[0]) > 303 || !utf8.ValidString(p[0]) {
		t.Errorf("%d problems, the first %d bytes, the last %q", len(p), len(p[0]), p[len(p)-1])
	}
}

// /health reports every worker state RunPod counts.
func TestHealthWorkerStates(t *testing.T) {
	var h Health
	raw := `{"jobs":{},"workers":{"idle":1,"initializing":2,"ready":3,"running":4,"throttled":5,"unhealthy":6}}`
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		t.Fatal(err)
	}
	if w := h.Workers; w != (HealthWorkers{Idle: 1, Initializing: 2, Ready: 3, Running: 4, Throttled: 5, Unhealthy: 6}) {
		t.Errorf("%+v", w)
	}
}

// /health's job counts, one place for the local API server and the fake
// endpoint: TIMED_OUT jobs are not counted, as RunPod's /health has no such field.
func TestHealthJobsCount(t *testing.T) {
	var h HealthJobs
	for _, s := range []Status{Completed, Failed, Failed, InProgress, InQueue, Cancelled, TimedOut} {
		h.Count(s)
	}
	if want := (HealthJobs{Completed: 1, Failed: 2, InProgress: 1, InQueue: 1, Cancelled: 1}); h != want {
		t.Errorf("counts %+v, want %+v", h, want)
	}
}
