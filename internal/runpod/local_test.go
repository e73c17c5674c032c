package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestRunTestInput(t *testing.T) {
	var out bytes.Buffer
	if code := RunTestInput(context.Background(), echo, []byte(`{"input":{"a":1}}`), &out, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res["output"].(map[string]any)["a"] != 1.0 {
		t.Fatalf("output %s", out.String())
	}
	for _, bad := range []string{`{}`, `not json`, `{"input":null}`} {
		out.Reset()
		if code := RunTestInput(context.Background(), echo, []byte(bad), &out, nil); code != 1 || !strings.Contains(out.String(), `"error"`) {
			t.Errorf("%s: exit %d %s", bad, code, out.String())
		}
	}
	failing := HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
		if job.ID != "local_test" {
			t.Errorf("id %q", job.ID)
		}
		return nil, errors.New("it broke")
	})
	out.Reset()
	if code := RunTestInput(context.Background(), failing, []byte(`{"input":{}}`), &out, nil); code != 1 || !strings.Contains(out.String(), "it broke") {
		t.Errorf("exit %d %s", code, out.String())
	}
}

// call serves one request with the handler, in process.
func call(t *testing.T, h http.Handler, method, url, body string) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, url, strings.NewReader(body)))
	var m map[string]any
	if err := json.NewDecoder(rec.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	m["_code"] = float64(rec.Code)
	return m
}

// The local endpoint API, in a synctest bubble: a job's state is read once
// everything it started is blocked, never polled.
func TestAPIServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		srv := NewAPIServer(HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			var in map[string]any
			job.DecodeInput(&in)
			if in["wait"] == true {
				u.Stream("chunk-1")
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			if d, ok := in["seconds"].(float64); ok {
				<-time.After(time.Duration(d * float64(time.Second)))
			}
			if in["fail"] == true {
				return nil, errors.New("asked to fail")
			}
			return in, nil
		}), 2, nil)

		r := call(t, srv, "POST", "/runsync", `{"input":{"x":1}}`)
		if r["status"] != "COMPLETED" || r["output"].(map[string]any)["x"] != 1.0 || r["id"] == "" {
			t.Errorf("runsync: %v", r)
		}
		r = call(t, srv, "POST", "/runsync", `{"input":{"fail":true}}`)
		if r["status"] != "FAILED" || r["error"] != "asked to fail" {
			t.Errorf("runsync failure: %v", r)
		}
		r = call(t, srv, "POST", "/run", `{"input":{"wait":true}}`)
		id, _ := r["id"].(string)
		if r["status"] != "IN_QUEUE" || id == "" {
			t.Fatalf("run: %v", r)
		}
		synctest.Wait()
		if s := call(t, srv, "GET", "/status/"+id, ""); s["status"] != "IN_PROGRESS" {
			t.Fatalf("status of a running job: %v", s)
		}
		if s := call(t, srv, "GET", "/stream/"+id, ""); len(s["stream"].([]any)) != 1 {
			t.Errorf("stream: %v", s)
		}
		if hl := call(t, srv, "GET", "/health", ""); hl["jobs"].(map[string]any)["inProgress"] != 1.0 || hl["jobs"].(map[string]any)["completed"] != 1.0 {
			t.Errorf("health: %v", hl)
		}
		if c := call(t, srv, "POST", "/cancel/"+id, ""); c["status"] != "CANCELLED" {
			t.Errorf("cancel: %v", c)
		}
		if s := call(t, srv, "GET", "/status/"+id, ""); s["status"] != "CANCELLED" {
			t.Errorf("status after cancel: %v", s)
		}
		r = call(t, srv, "POST", "/run", `{"input":{"x":2,"seconds":1.5}}`)
		id2 := r["id"].(string)
		synctest.Wait()
		if s := call(t, srv, "POST", "/status/"+id2, ""); s["status"] != "IN_PROGRESS" {
			t.Errorf("status of a 1.5 s job as it starts: %v", s)
		}
		advance(1500 * time.Millisecond)
		if s := call(t, srv, "GET", "/status/"+id2, ""); s["status"] != "COMPLETED" || s["executionTime"] != 1500.0 || s["delayTime"] != 0.0 {
			t.Errorf("status after 1.5 s: %v", s)
		}
		if s := call(t, srv, "GET", "/status/nope", ""); s["_code"] != 404.0 {
			t.Errorf("unknown id: %v", s)
		}
		if s := call(t, srv, "POST", "/run", `{"no":"input"}`); s["_code"] != 400.0 {
			t.Errorf("missing input: %v", s)
		}
		close(release)
	})
}

// The local API also answers RunPod's endpoint paths, /v2/{endpoint}/...
// for any endpoint id, so RUNPOD_API_URL=http://127.0.0.1:8000/v2 points a
// dispatcher at a local worker: the URLs below are the ones it builds.
func TestAPIServerEndpointPaths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		srv := NewAPIServer(HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
			u.Stream("chunk")
			select {
			case <-release:
				return "ok", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}), 1, nil)
		base := "/v2/abc123xyz"
		r := call(t, srv, "POST", base+"/run", `{"input":{"jitconfig":"x"}}`)
		id, _ := r["id"].(string)
		if r["_code"] != 200.0 || r["status"] != "IN_QUEUE" || id == "" {
			t.Fatalf("run: %v", r)
		}
		synctest.Wait()
		if s := call(t, srv, "GET", base+"/status/"+id, ""); s["status"] != "IN_PROGRESS" {
			t.Errorf("status: %v", s)
		}
		if s := call(t, srv, "POST", "/v2/other-endpoint/status/"+id, ""); s["status"] != "IN_PROGRESS" {
			t.Errorf("status under another endpoint id: %v", s)
		}
		if s := call(t, srv, "GET", base+"/stream/"+id, ""); len(s["stream"].([]any)) != 1 {
			t.Errorf("stream: %v", s)
		}
		if h := call(t, srv, "GET", base+"/health", ""); h["jobs"].(map[string]any)["inProgress"] != 1.0 {
			t.Errorf("health: %v", h)
		}
		if c := call(t, srv, "POST", base+"/cancel/"+id, ""); c["status"] != "CANCELLED" {
			t.Errorf("cancel: %v", c)
		}
		close(release)
		if s := call(t, srv, "POST", base+"/runsync", `{"input":{}}`); s["status"] != "COMPLETED" || s["output"] != "ok" {
			t.Errorf("runsync: %v", s)
		}
		if s := call(t, srv, "GET", base+"/status/nope", ""); s["_code"] != 404.0 {
			t.Errorf("unknown id: %v", s)
		}
	})
}
