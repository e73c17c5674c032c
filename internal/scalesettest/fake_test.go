package scalesettest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/hashicorp/go-retryablehttp"
)

const pat = "ghp_FAKEPAT0123456789abcdefghijklmnop"

// fastRetries is the client's retry policy with waits of a millisecond.
func fastRetries() scaleset.HTTPOption {
	c := retryablehttp.NewClient()
	c.RetryMax, c.RetryWaitMin, c.RetryWaitMax = 4, time.Millisecond, 5*time.Millisecond
	return scaleset.WithRetryableHTTPClint(c)
}

func newClient(t *testing.T, f *Fake) *scaleset.Client {
	t.Helper()
	c, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL: f.ConfigURL("octo"), PersonalAccessToken: pat,
	}, fastRetries())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newFake(t *testing.T) *Fake {
	f := New(pat)
	f.LongPoll = 300 * time.Millisecond
	t.Cleanup(f.Close)
	return f
}

func createSet(t *testing.T, c *scaleset.Client, name string) *scaleset.RunnerScaleSet {
	t.Helper()
	s, err := c.CreateRunnerScaleSet(context.Background(), &scaleset.RunnerScaleSet{Name: name, RunnerGroupID: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// next polls until a message with job messages arrives.
func next(t *testing.T, s *scaleset.MessageSessionClient, last int) *scaleset.RunnerScaleSetMessage {
	t.Helper()
	for range 10 {
		m, err := s.GetMessage(context.Background(), last, 3)
		if err != nil {
			t.Fatal(err)
		}
		if m != nil {
			if err := s.DeleteMessage(context.Background(), m.MessageID); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatal("no message")
	return nil
}

func post(t *testing.T, url string, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// decodeRunner reads .runner out of an encoded JIT config.
func decodeRunner(t *testing.T, jit string) map[string]any {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(jit)
	if err != nil {
		t.Fatal(err)
	}
	var files map[string]string
	json.Unmarshal(raw, &files)
	b, _ := base64.StdEncoding.DecodeString(files[".runner"])
	var rf map[string]any
	if err := json.Unmarshal(b, &rf); err != nil {
		t.Fatalf(".runner: %v", err)
	}
	return rf
}

// TestJobLifecycleWithTheRealClient drives a job from queue to completion
// through github.com/actions/scaleset: scale set, session, JobAvailable,
// acquire, JobAssigned, JIT runner, JobStarted, JobCompleted, runner gone.
func TestJobLifecycleWithTheRealClient(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f)
	ctx := context.Background()
	set := createSet(t, c, "runpod-gpu")
	if got, err := c.GetRunnerScaleSet(ctx, 1, "runpod-gpu"); err != nil || got.ID != set.ID || got.Labels[0].Name != "runpod-gpu" {
		t.Fatalf("get: %+v %v", got, err)
	}
	if g, err := c.GetRunnerGroupByName(ctx, "default"); err != nil || g.ID != 1 {
		t.Fatalf("group: %+v %v", g, err)
	}
	sess, err := c.MessageSessionClient(ctx, set.ID, "host-a")
	if err != nil {
		t.Fatal(err)
	}
	if st := sess.Session().Statistics; st == nil || st.TotalAssignedJobs != 0 {
		t.Fatalf("session statistics %+v", st)
	}
	req := f.QueueJob("runpod-gpu")
	f.QueueJob("other-label") // never offered to this set
	m := next(t, sess, 0)
	if len(m.JobAvailableMessages) != 1 || m.JobAvailableMessages[0].RunnerRequestID != req || m.Statistics.TotalAvailableJobs != 1 {
		t.Fatalf("available: %+v %+v", m, m.Statistics)
	}
	if ids, err := sess.AcquireJobs(ctx, []int64{req}); err != nil || len(ids) != 1 {
		t.Fatalf("acquire: %v %v", ids, err)
	}
	m = next(t, sess, m.MessageID)
	if len(m.JobAssignedMessages) != 1 || m.Statistics.TotalAssignedJobs != 1 {
		t.Fatalf("assigned: %+v %+v", m, m.Statistics)
	}
	jit, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "r-1"}, set.ID)
	if err != nil || jit.Runner.Name != "r-1" || jit.Runner.RunnerScaleSetID != set.ID {
		t.Fatalf("jit: %+v %v", jit, err)
	}
	if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "r-1"}, set.ID); !errors.Is(err, scaleset.RunnerExistsError) {
		t.Fatalf("duplicate name: %v", err)
	}
	rf := decodeRunner(t, jit.EncodedJITConfig)
	base := fmt.Sprintf("%s/_fake/runners/%d/", rf["fakeApi"], jit.Runner.ID)
	if post(t, base+"online", "") != 204 || post(t, base+"job", "") != 204 {
		t.Fatal("runner calls refused")
	}
	m = next(t, sess, m.MessageID)
	if len(m.JobStartedMessages) != 1 || m.JobStartedMessages[0].RunnerName != "r-1" || m.Statistics.TotalRunningJobs != 1 {
		t.Fatalf("started: %+v", m)
	}
	if err := c.RemoveRunner(ctx, int64(jit.Runner.ID)); !errors.Is(err, scaleset.JobStillRunningError) {
		t.Fatalf("removing a busy runner: %v", err)
	}
	post(t, base+"done", `{"result": "Failed"}`)
	m = next(t, sess, m.MessageID)
	if len(m.JobCompletedMessages) != 1 || m.JobCompletedMessages[0].Result != "failed" || m.Statistics.TotalAssignedJobs != 0 {
		t.Fatalf("completed: %+v", m)
	}
	if _, err := c.GetRunner(ctx, jit.Runner.ID); !errors.Is(err, scaleset.RunnerNotFoundError) {
		t.Fatalf("ephemeral runner still there: %v", err)
	}
	// Nothing more: the long poll ends with 202, nil.
	if m, err := sess.GetMessage(ctx, m.MessageID, 3); m != nil || err != nil {
		t.Fatalf("empty poll: %+v %v", m, err)
	}
	if n := f.Unacknowledged(set.ID); n != 0 {
		t.Errorf("%d messages not acknowledged", n)
	}
	if caps := f.Capacities(set.ID); len(caps) == 0 || caps[0] != 3 {
		t.Errorf("capacities %v", caps)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.Sessions()) != 0 {
		t.Fatal("session left after Close")
	}
}

func TestSecondSessionConflicts(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f)
	set := createSet(t, c, "gpu")
	ctx := context.Background()
	if _, err := c.MessageSessionClient(ctx, set.ID, "a"); err != nil {
		t.Fatal(err)
	}
	_, err := c.MessageSessionClient(ctx, set.ID, "b")
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "TaskAgentSessionConflictException") {
		t.Fatalf("second session: %v", err)
	}
	// A session nobody polls expires; then another can start.
	f.mu.Lock()
	f.SessionTimeout = 10 * time.Millisecond
	f.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	if _, err := c.MessageSessionClient(ctx, set.ID, "b"); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// TestUnacknowledgedMessageRedelivered: a message not deleted comes back
// to the next session.
func TestUnacknowledgedMessageRedelivered(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f)
	set := createSet(t, c, "gpu")
	ctx := context.Background()
	s1, _ := c.MessageSessionClient(ctx, set.ID, "a")
	f.QueueJob("gpu")
	m1, err := s1.GetMessage(ctx, 0, 1)
	if err != nil || m1 == nil {
		t.Fatal(m1, err)
	}
	s1.Close(ctx)
	s2, _ := c.MessageSessionClient(ctx, set.ID, "b")
	m2, err := s2.GetMessage(ctx, 0, 1)
	if err != nil || m2 == nil || m2.MessageID != m1.MessageID {
		t.Fatalf("redelivery: %+v %v", m2, err)
	}
}

func TestReoffer(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f)
	set := createSet(t, c, "gpu")
	ctx := context.Background()
	sess, _ := c.MessageSessionClient(ctx, set.ID, "a")
	req := f.QueueJob("gpu")
	if f.Reoffer(req) == nil {
		t.Fatal("re-offered a job that was not assigned")
	}
	m := next(t, sess, 0)
	sess.AcquireJobs(ctx, []int64{req})
	m = next(t, sess, m.MessageID)
	if err := f.Reoffer(req); err != nil {
		t.Fatal(err)
	}
	m = next(t, sess, m.MessageID)
	if len(m.JobCompletedMessages) != 1 || m.JobCompletedMessages[0].Result != "canceled" || len(m.JobAvailableMessages) != 1 {
		t.Fatalf("re-offer: %+v", m)
	}
	if j := f.Jobs()[0]; j.Offers != 2 || j.State != JobAvailable {
		t.Fatalf("job %+v", j)
	}
}

// TestFaultsAreRetried: 5xx and 429 answers reach the client, which
// retries them (go-retryablehttp), and are counted.
func TestFaultsAreRetried(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f)
	set := createSet(t, c, "gpu")
	f.Fail(OpGenerateJIT, 500, 429, 503)
	if _, err := c.GenerateJitRunnerConfig(context.Background(), &scaleset.RunnerScaleSetJitRunnerSetting{Name: "x"}, set.ID); err != nil {
		t.Fatal(err)
	}
	if n := f.Count(OpGenerateJIT); n != 4 {
		t.Fatalf("%d generate-jit requests, want 4", n)
	}
	f.Fail(OpGetMessage, 500, 500, 500, 500, 500)
	sess, _ := c.MessageSessionClient(context.Background(), set.ID, "a")
	if _, err := sess.GetMessage(context.Background(), 0, 1); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("persistent 500: %v", err)
	}
}

func TestTokensRefresh(t *testing.T) {
	f := newFake(t)
	f.AdminTokenTTL = 30 * time.Second // under the client's 60 s margin: refreshed every call
	c := newClient(t, f)
	set := createSet(t, c, "gpu")
	c.GetRunnerScaleSetByID(context.Background(), set.ID)
	if n := f.Count(OpRunnerRegistration); n != 2 {
		t.Fatalf("%d admin connections, want 2", n)
	}
	sess, _ := c.MessageSessionClient(context.Background(), set.ID, "a")
	f.ExpireSessionTokens()
	if _, err := sess.GetMessage(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	if n := f.Count(OpSessionRefresh); n != 1 {
		t.Fatalf("%d session refreshes, want 1", n)
	}
}

func TestGitHubApp(t *testing.T) {
	f := newFake(t)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	f.AddApp("Iv1.abc", 77, &key.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	c, err := scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
		GitHubConfigURL: f.ConfigURL("enterprises/acme"),
		GitHubAppAuth:   scaleset.GitHubAppAuth{ClientID: "Iv1.abc", InstallationID: 77, PrivateKey: string(pemKey)},
	}, fastRetries())
	if err != nil {
		t.Fatal(err)
	}
	createSet(t, c, "gpu")
	if f.Count(OpAccessToken) != 1 {
		t.Fatal("no installation token")
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	bad, _ := scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
		GitHubConfigURL: f.ConfigURL("octo"),
		GitHubAppAuth: scaleset.GitHubAppAuth{ClientID: "Iv1.abc", InstallationID: 77,
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}))},
	}, fastRetries())
	if _, err := bad.GetRunnerScaleSet(context.Background(), 1, "gpu"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong key: %v", err)
	}
}
