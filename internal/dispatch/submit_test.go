package dispatch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// Submit is /run for other callers (the scaler): an error after RunPod
// may have received the request says so through MaybeCreated, a refusal
// does not, and neither is sent twice.
func TestSubmitTellsMaybeCreatedFromRefused(t *testing.T) {
	jit := "eyJKSVQiOiJzZWNyZXQifQ"
	in := jobapi.Input{JITConfig: &jit}
	for name, c := range map[string]struct {
		answer      func(w http.ResponseWriter)
		calls       int
		maybe, gone bool
	}{
		"500":      {func(w http.ResponseWriter) { w.WriteHeader(500) }, 1, true, false},
		"no id":    {func(w http.ResponseWriter) { w.Write([]byte(`{"status":"IN_QUEUE"}`)) }, 1, true, false},
		"400":      {func(w http.ResponseWriter) { w.WriteHeader(400) }, 1, false, false},
		"404":      {func(w http.ResponseWriter) { w.WriteHeader(404) }, 1, false, true},
		"429 x3":   {func(w http.ResponseWriter) { w.WriteHeader(429) }, 3, false, false},
		"accepted": {nil, 1, false, false},
	} {
		t.Run(name, func(t *testing.T) {
			a, srv := newRunAPI(t, func(n int, w http.ResponseWriter) bool {
				if c.answer == nil {
					return false
				}
				c.answer(w)
				return true
			})
			j, err := testClient(srv.URL, srv.Client()).Submit(context.Background(), in, 10*time.Minute, time.Hour)
			if a.created() != c.calls {
				t.Fatalf("%d calls, want %d", a.created(), c.calls)
			}
			if c.answer == nil {
				if err != nil || j.ID != "job-1" {
					t.Fatalf("%v %+v", err, j)
				}
				return
			}
			if err == nil || MaybeCreated(err) != c.maybe || NotFound(err) != c.gone {
				t.Fatalf("MaybeCreated %v NotFound %v: %v", MaybeCreated(err), NotFound(err), err)
			}
		})
	}
}

// An error answer that quotes the request (which holds a JIT config or a
// PAT) is not quoted in the error, with or without a Redactor.
func TestErrorAnswerEchoingTheRequestIsNotShown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 4096)
		n, _ := r.Body.Read(b)
		w.WriteHeader(400)
		w.Write([]byte(`{"error": "bad input: ` + strings.ReplaceAll(string(b[:n]), `"`, `'`) + `"}`))
	}))
	defer srv.Close()
	jit := strings.Repeat("eyJKSVRDT05GSUci", 20)
	c := testClient(srv.URL, srv.Client())
	_, err := c.Submit(context.Background(), jobapi.Input{JITConfig: &jit}, 0, 0)
	if err == nil || strings.Contains(err.Error(), jit[:32]) || !strings.Contains(err.Error(), "HTTP 400") || MaybeCreated(err) {
		t.Fatalf("%v", err)
	}
	if !strings.Contains(err.Error(), "quotes the request") {
		t.Fatalf("the error does not say why the answer is not shown: %v", err)
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an *APIError: %v", err)
	}
}

func TestPolicyOfTimeouts(t *testing.T) {
	exec, ttl, err := Policy(time.Minute, 10*time.Minute)
	if err != nil || exec != 21*time.Minute || ttl != 21*time.Minute+QueueAllowance {
		t.Fatalf("%v %v %v", exec, ttl, err)
	}
	if _, _, err := Policy(time.Hour, 7*24*time.Hour); err == nil {
		t.Fatal("a policy over RunPod's limit")
	}
}
