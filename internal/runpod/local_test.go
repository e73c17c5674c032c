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

func call(t *testing.T, method, url, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	m["_code"] = float64(resp.StatusCode)
	return m
}

func TestAPIServer(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, job *Job, u Updater) (any, error) {
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
		if in["fail"] == true {
			return nil, errors.New("asked to fail")
		}
		return in, nil
	})
	srv := httptest.NewServer(NewAPIServer(h, 2, nil))
	defer srv.Close()

	r := call(t, "POST", srv.URL+"/runsync", `{"input":{"x":1}}`)
	if r["status"] != "COMPLETED" || r["output"].(map[string]any)["x"] != 1.0 || r["id"] == "" {
		t.Errorf("runsync: %v", r)
	}
	r = call(t, "POST", srv.URL+"/runsync", `{"input":{"fail":true}}`)
	if r["status"] != "FAILED" || r["error"] != "asked to fail" {
		t.Errorf("runsync failure: %v", r)
	}
	r = call(t, "POST", srv.URL+"/run", `{"input":{"wait":true}}`)
	id, _ := r["id"].(string)
	if r["status"] != "IN_QUEUE" || id == "" {
		t.Fatalf("run: %v", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for call(t, "GET", srv.URL+"/status/"+id, "")["status"] != "IN_PROGRESS" {
		if time.Now().After(deadline) {
			t.Fatal("never IN_PROGRESS")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := call(t, "GET", srv.URL+"/stream/"+id, ""); len(s["stream"].([]any)) != 1 {
		t.Errorf("stream: %v", s)
	}
	if hl := call(t, "GET", srv.URL+"/health", ""); hl["jobs"].(map[string]any)["inProgress"] != 1.0 || hl["jobs"].(map[string]any)["completed"] != 1.0 {
		t.Errorf("health: %v", hl)
	}
	if c := call(t, "POST", srv.URL+"/cancel/"+id, ""); c["status"] != "CANCELLED" {
		t.Errorf("cancel: %v", c)
	}
	if s := call(t, "GET", srv.URL+"/status/"+id, ""); s["status"] != "CANCELLED" {
		t.Errorf("status after cancel: %v", s)
	}
	r = call(t, "POST", srv.URL+"/run", `{"input":{"x":2}}`)
	id2 := r["id"].(string)
	for call(t, "POST", srv.URL+"/status/"+id2, "")["status"] != "COMPLETED" {
		if time.Now().After(deadline) {
			t.Fatal("never COMPLETED")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := call(t, "GET", srv.URL+"/status/"+id2, ""); s["executionTime"] == nil || s["delayTime"] == nil {
		t.Errorf("status lacks times: %v", s)
	}
	if s := call(t, "GET", srv.URL+"/status/nope", ""); s["_code"] != 404.0 {
		t.Errorf("unknown id: %v", s)
	}
	if s := call(t, "POST", srv.URL+"/run", `{"no":"input"}`); s["_code"] != 400.0 {
		t.Errorf("missing input: %v", s)
	}
	close(release)
}
