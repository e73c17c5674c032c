package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// runAPI is /run: answer(n) decides the n-th call's fate after the job was
// created (0: answer normally).
type runAPI struct {
	mu     sync.Mutex
	bodies []map[string]any
}

func newRunAPI(t *testing.T, answer func(n int, w http.ResponseWriter) bool) (*runAPI, *httptest.Server) {
	a := &runAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		json.NewDecoder(r.Body).Decode(&b)
		a.mu.Lock()
		a.bodies = append(a.bodies, b)
		n := len(a.bodies)
		a.mu.Unlock()
		if answer(n, w) {
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"id": "job-1", "status": "IN_QUEUE"})
	}))
	t.Cleanup(srv.Close)
	return a, srv
}

func (a *runAPI) created() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.bodies)
}

func testClient(url string, hc *http.Client) *Client {
	return &Client{APIURL: url, Endpoint: "ep1", APIKey: secret.New("rpa_TESTKEY"), HTTP: hc, Attempts: 3, Backoff: time.Millisecond}
}

var startOpts = StartOptions{Scope: "octo", Labels: []string{"runpod-1-1-abcd"}, IdleTimeout: time.Minute, JobTimeout: time.Hour}

// A /run whose answer is lost after RunPod received it (a 5xx, a timeout)
// is not sent again: RunPod may have created the job, and a second one
// would register and bill a second runner.
func TestStartDoesNotRetryARunThatMayHaveBeenReceived(t *testing.T) {
	for name, fail := range map[string]func(w http.ResponseWriter){
		"502": func(w http.ResponseWriter) { http.Error(w, "bad gateway", 502) },
		"401": func(w http.ResponseWriter) { http.Error(w, "unauthorized", 401) },
		"timeout": func(w http.ResponseWriter) {
			time.Sleep(400 * time.Millisecond)
		},
	} {
		t.Run(name, func(t *testing.T) {
			a, srv := newRunAPI(t, func(n int, w http.ResponseWriter) bool {
				if n == 1 {
					fail(w)
					return true
				}
				return false
			})
			c := testClient(srv.URL, &http.Client{Timeout: 200 * time.Millisecond})
			_, err := c.Start(context.Background(), startOpts)
			if a.created() != 1 {
				t.Fatalf("/run sent %d times after a lost answer: a duplicate job", a.created())
			}
			if name == "401" {
				if err == nil || strings.Contains(err.Error(), "may have") {
					t.Errorf("401: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "may have") || !strings.Contains(err.Error(), "runpod-1-1-abcd") {
				t.Errorf("error %v: should say the job may exist and name its label", err)
			}
		})
	}
}

// A /run that provably never reached RunPod (connection refused, 429) is
// retried.
func TestStartRetriesARunThatWasNotReceived(t *testing.T) {
	a, srv := newRunAPI(t, func(n int, w http.ResponseWriter) bool {
		if n == 1 {
			http.Error(w, `{"error":"rate limited"}`, 429)
			return true
		}
		return false
	})
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	c := testClient(srv.URL, &http.Client{Transport: tr})
	j, err := c.Start(context.Background(), startOpts)
	if err != nil || j.ID != "job-1" {
		t.Fatalf("Start: %v %v", j, err)
	}
	if a.created() != 2 { // the 429, then the job
		t.Errorf("/run received %d times, want 2", a.created())
	}
}

func policyOf(t *testing.T, a *runAPI) map[string]any {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	p, _ := a.bodies[len(a.bodies)-1]["policy"].(map[string]any)
	return p
}

// RunPod's ttl covers the wait in the queue and the run, and the job's
// data is deleted when it expires: it is set, and never shorter than the
// execution timeout.
func TestStartSetsATTLCoveringQueueAndExecution(t *testing.T) {
	a, srv := newRunAPI(t, func(int, http.ResponseWriter) bool { return false })
	c := testClient(srv.URL, nil)
	o := startOpts
	o.IdleTimeout, o.JobTimeout = 5*time.Minute, 120*time.Hour
	if _, err := c.Start(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	exec := (5*time.Minute + 120*time.Hour + 10*time.Minute).Milliseconds()
	p := policyOf(t, a)
	if p["executionTimeout"] != float64(exec) || p["ttl"] != float64(exec+QueueAllowance.Milliseconds()) {
		t.Errorf("policy %v, want executionTimeout %d and ttl %d", p, exec, exec+QueueAllowance.Milliseconds())
	}
	// Near RunPod's 7-day limit, the queue allowance shrinks.
	o.IdleTimeout = 40 * time.Hour
	if _, err := c.Start(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if p := policyOf(t, a); p["ttl"] != float64(MaxTimeout.Milliseconds()) {
		t.Errorf("policy %v: ttl should be capped at %v", p, MaxTimeout)
	}
}

func TestStartRefusesTimeoutsRunPodRefuses(t *testing.T) {
	a, srv := newRunAPI(t, func(int, http.ResponseWriter) bool { return false })
	c := testClient(srv.URL, nil)
	for name, tc := range map[string]struct {
		o    func(*StartOptions)
		want string
	}{
		"execution over 7 days": {func(o *StartOptions) { o.IdleTimeout, o.JobTimeout = 100*time.Hour, 100*time.Hour }, "RunPod's limit"},
		"ttl over 7 days":       {func(o *StartOptions) { o.TTL = 8 * 24 * time.Hour }, "RunPod's limit"},
		"ttl under execution":   {func(o *StartOptions) { o.TTL = time.Hour }, "shorter than the execution timeout"},
	} {
		o := startOpts
		tc.o(&o)
		if _, err := c.Start(context.Background(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if a.created() != 0 {
		t.Errorf("%d jobs submitted with timeouts RunPod refuses", a.created())
	}
}
