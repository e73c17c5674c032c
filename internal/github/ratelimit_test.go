package github

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
)

// A secondary rate limit that sends neither Retry-After nor a reset, as a
// 429 or as a 403, is waited out for at least a minute, growing
// exponentially (GitHub's documented rule), and the waits are logged.
func TestSecondaryLimitWaitsAtLeastAMinute(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	synctest.Test(t, func(t *testing.T) {
		c, logs := fakeClient(t, g)
		g.Fail(githubtest.Fault{Match: "generate-jitconfig", Secondary: true, Status: 429}, githubtest.Fault{Match: "generate-jitconfig", Secondary: true})
		start := time.Now()
		if _, _, err := c.JITConfig(context.Background(), "r1", 1, []string{"x"}, "_work"); err != nil {
			t.Fatalf("JITConfig: %v", err)
		}
		if d := time.Since(start); d < 3*time.Minute || d > 3*time.Minute+time.Second {
			t.Errorf("took %v, want 1 min then 2 min", d)
		}
		if l := logs.String(); !strings.Contains(l, "retry_in=1m0s") || !strings.Contains(l, "retry_in=2m0s") {
			t.Errorf("the waits were not logged:\n%s", l)
		}
	})
}

// A primary limit answered with 429 waits for X-RateLimit-Reset.
func TestPrimaryLimitAs429WaitsForTheReset(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	synctest.Test(t, func(t *testing.T) {
		c, logs := fakeClient(t, g)
		g.Fail(githubtest.Fault{Match: "generate-jitconfig", RateLimit: true, Status: 429, Reset: 40 * time.Second})
		start := time.Now()
		if _, _, err := c.JITConfig(context.Background(), "r1", 1, []string{"x"}, "_work"); err != nil {
			t.Fatalf("JITConfig: %v", err)
		}
		if d := time.Since(start); d < 40*time.Second || d > 42*time.Second {
			t.Errorf("took %v, want the 40 s to the reset", d)
		}
		if n := len(g.Requests()); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
		if !strings.Contains(logs.String(), "rate limit") {
			t.Errorf("the wait was not logged:\n%s", logs.String())
		}
	})
}

// DELETE answering 422 is retried only while the runner is busy; a
// validation failure fails at once.
func TestDelete422RetriedOnlyWhenBusy(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	synctest.Test(t, func(t *testing.T) {
		c, _ := fakeClient(t, g)
		id, _, err := c.JITConfig(context.Background(), "r1", 1, []string{"x"}, "_work")
		if err != nil {
			t.Fatal(err)
		}
		g.Fail(githubtest.Fault{Match: "DELETE", Status: 422, Message: "Validation Failed"})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		err = c.DeleteRunner(ctx, id)
		if err == nil || !strings.Contains(err.Error(), "Validation Failed") || time.Since(start) > 0 {
			t.Errorf("after %v: %v; want the validation failure at once", time.Since(start), err)
		}

		g.SetRunner(id, "online", true)
		time.AfterFunc(5*time.Second, func() { g.SetRunner(id, "offline", false) })
		start = time.Now()
		if err := c.DeleteRunner(ctx, id); err != nil || time.Since(start) < 5*time.Second {
			t.Errorf("busy runner: %v after %v; want it deleted once idle", err, time.Since(start))
		}
	})
}

// Installation tokens are minted through the GitHub policy: a 5xx is
// retried and a rate limit waited out.
func TestInstallationTokenRetried(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	app := testApp(g)
	synctest.Test(t, func(t *testing.T) {
		g.Fail(githubtest.Fault{Match: "access_tokens", Status: 502}, githubtest.Fault{Match: "access_tokens", RateLimit: true, Status: 429, Reset: 20 * time.Second})
		start := time.Now()
		tok, err := InstallationToken(context.Background(), Options{APIURL: "https://ghes.test", HTTP: g.Client()}, app)
		if err != nil || !strings.HasPrefix(tok.Reveal(), "ghs_") {
			t.Fatalf("InstallationToken: %v", err)
		}
		if d := time.Since(start); d < 20*time.Second || d > 23*time.Second {
			t.Errorf("took %v, want a short backoff then the 20 s to the reset", d)
		}
		// A refusal is not retried.
		g.Fail(githubtest.Fault{Match: "access_tokens", Status: 404})
		n := len(g.Requests())
		if _, err := InstallationToken(context.Background(), Options{APIURL: "https://ghes.test", HTTP: g.Client()}, app); err == nil || len(g.Requests()) != n+1 {
			t.Errorf("404: %v after %d requests, want one", err, len(g.Requests())-n)
		}
	})
}

// Minting an installation token goes through the client's error
// handling: a refusal is an *APIError with GitHub's status, not retried
// and not uncertain, like any other call's.
func TestInstallationTokenErrorsAreAPIErrors(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	app := testApp(g)
	o := Options{APIURL: "https://ghes.test", HTTP: g.Client()}
	for _, tc := range []struct {
		status int
		want   string
	}{
		{401, "the app id or private key was rejected"},
		{403, "GitHub App token"},
		{404, "installation 77 not found for app 4242"},
		{422, "GitHub App token"},
	} {
		g.Fail(githubtest.Fault{Match: "access_tokens", Status: tc.status})
		n := len(g.Requests())
		_, err := InstallationToken(context.Background(), o, app)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(err.Error(), tc.want) || Uncertain(err) || len(g.Requests()) != n+1 {
			t.Errorf("%d: %v (%T), want an *APIError with the status saying %q, one request", tc.status, err, err, tc.want)
		}
	}
}

// MaxRateLimitWait is the client's: a client that may wait 10 s fails at
// once on a 40 s rate limit, while another client waits it out.
func TestMaxRateLimitWaitIsTheClients(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	synctest.Test(t, func(t *testing.T) {
		short, _ := fakeClient(t, g)
		long, _ := fakeClient(t, g)
		short.MaxRateLimitWait = 10 * time.Second
		if long.MaxRateLimitWait != 5*time.Minute {
			t.Errorf("default MaxRateLimitWait %v, want 5m", long.MaxRateLimitWait)
		}
		g.Fail(githubtest.Fault{Match: "generate-jitconfig", RateLimit: true, Reset: 40 * time.Second})
		start := time.Now()
		_, _, err := short.JITConfig(context.Background(), "r1", 1, []string{"x"}, "_work")
		if err == nil || !strings.Contains(err.Error(), "longer than 10s") || time.Since(start) > 0 {
			t.Errorf("after %v: %v; want a refusal to wait, at once", time.Since(start), err)
		}
		g.Fail(githubtest.Fault{Match: "generate-jitconfig", RateLimit: true, Reset: 40 * time.Second})
		if _, _, err := long.JITConfig(context.Background(), "r1", 1, []string{"x"}, "_work"); err != nil || time.Since(start) < 40*time.Second {
			t.Errorf("after %v: %v; want the reset waited for", time.Since(start), err)
		}
	})
}
