package github

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

const testToken = "ghp_GITHUBTESTTOKEN0123456789abcdefghijkl"

// fakeClient is a client for my-org on a fake GitHub reached in-process
// over https (so it runs in a synctest bubble). The fake is made outside
// the bubble: its listener must not live in one.
func fakeClient(t *testing.T, g *githubtest.GitHub) (*Client, *runpodtest.LogBuffer) {
	t.Helper()
	logs := &runpodtest.LogBuffer{}
	c, err := NewClient(Scope{Kind: Org, Owner: "my-org"}, Options{APIURL: "https://ghes.test/api/v3/", Token: secret.New(testToken),
		HTTP: g.Client(), Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c, logs
}

// GitHub's rule: a Retry-After header means "wait that long", whatever
// the body says; a 403 that carries one is a rate limit, not a refusal.
func TestRetryAfterIsARateLimit(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	synctest.Test(t, func(t *testing.T) {
		c, logs := fakeClient(t, g)
		g.Fail(githubtest.Fault{Match: "generate-jitconfig", RetryAfter: 2}, githubtest.Fault{Match: "generate-jitconfig", Status: 429, RetryAfter: 3})
		start := time.Now()
		id, _, err := c.JITConfig(context.Background(), "r1", 1, []string{"x"}, "_work")
		if err != nil || id == 0 {
			t.Fatalf("JITConfig: %v", err)
		}
		if d := time.Since(start); d < 5*time.Second || d > 6*time.Second {
			t.Errorf("took %v, want the 2 s and 3 s GitHub asked for", d)
		}
		if l := logs.String(); strings.Count(l, "rate limit") < 2 || !strings.Contains(l, "retry_in=3s") {
			t.Errorf("the waits were not logged:\n%s", l)
		}
	})
}

// A wait GitHub asks for that does not fit in the time left fails at
// once, saying so, instead of sleeping into the deadline.
func TestWaitsBoundedByTheDeadline(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	synctest.Test(t, func(t *testing.T) {
		c, _ := fakeClient(t, g)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		g.Fail(githubtest.Fault{Match: "generate-jitconfig", RetryAfter: 600})
		start := time.Now()
		_, _, err := c.JITConfig(ctx, "r1", 1, []string{"x"}, "_work")
		if err == nil || !strings.Contains(err.Error(), "rate limit") || time.Since(start) > time.Second {
			t.Errorf("after %v: %v; want a rate-limit error at once", time.Since(start), err)
		}

		// A 500 storm: retries stop when the next one cannot happen in time.
		c.Backoff, c.MaxWait = time.Second, time.Minute
		g.Fail(githubtest.Fault{Match: "runners", Status: 500, Times: 1000})
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start = time.Now()
		err = c.DeleteRunner(ctx, 101)
		if err == nil || !strings.Contains(err.Error(), "500") || time.Since(start) >= 5*time.Second {
			t.Errorf("after %v: %v; want the last error before the deadline", time.Since(start), err)
		}
	})
}

// Credentials go over https only: http is refused before any request is
// made, also for loopback unless a test asks for it.
func TestCredentialsOnlyOverHTTPS(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	scope := Scope{Kind: Org, Owner: "my-org"}
	for _, tc := range []struct {
		url      string
		loopback bool
		ok       bool
	}{
		{g.URL, false, false},
		{g.URL + "/api/v3/", true, true},
		{"http://github.example.com/api/v3/", true, false},
		{"https://user:pw@github.example.com/api/v3/", false, false},
		{"https://github.example.com/api/v3/", false, true},
		{"ftp://github.example.com/", false, false},
	} {
		_, err := NewClient(scope, Options{APIURL: tc.url, Token: secret.New(testToken), TestOnlyAllowLoopbackHTTP: tc.loopback})
		if (err == nil) != tc.ok {
			t.Errorf("%s (test loopback %v): %v", tc.url, tc.loopback, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("the error echoes the URL's password: %v", err)
		}
	}
	if n := len(g.Requests()); n != 0 {
		t.Errorf("%d requests reached the http server", n)
	}
}

// A redirect from https to http would carry the token in clear text (Go
// keeps Authorization on a redirect to the same host): refused.
func TestNoRedirectToHTTP(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaked = append(leaked, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(404)
	}))
	defer plain.Close()
	rt := roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.URL.Scheme == "https" {
			h := http.Header{"Location": {"http://ghes.test" + r.URL.Path}}
			return &http.Response{StatusCode: 302, Header: h, Body: http.NoBody, Request: r}, nil
		}
		r2 := r.Clone(r.Context())
		r2.URL.Host = strings.TrimPrefix(plain.URL, "http://")
		return http.DefaultTransport.RoundTrip(r2)
	})
	c, err := NewClient(Scope{Kind: Org, Owner: "my-org"}, Options{APIURL: "https://ghes.test/api/v3/", Token: secret.New(testToken), HTTP: &http.Client{Transport: rt}})
	if err != nil {
		t.Fatal(err)
	}
	c.Attempts = 1
	_, _, err = c.GetRunner(context.Background(), 1)
	mu.Lock()
	defer mu.Unlock()
	for _, a := range leaked {
		if strings.Contains(a, testToken) {
			t.Fatalf("the token was sent over http after a redirect (err %v)", err)
		}
	}
	if err == nil {
		t.Error("a redirect to http went unnoticed")
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The App's JWT is a credential too: no request is even built for http.
func TestInstallationTokenHTTPSOnly(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	app := testApp(g)
	if _, err := InstallationToken(context.Background(), Options{APIURL: g.URL}, app); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("http: %v", err)
	}
	if n := len(g.Requests()); n != 0 {
		t.Fatalf("the JWT went over http (%d requests)", n)
	}
	tok, err := InstallationToken(context.Background(), Options{APIURL: "https://ghes.test", HTTP: g.Client()}, app)
	if err != nil || !strings.HasPrefix(tok.Reveal(), "ghs_") {
		t.Fatalf("https: %v", err)
	}
	if r := g.Requests()[0]; r.Path != "/api/v3/app/installations/77/access_tokens" {
		t.Errorf("path %s", r.Path)
	}
}

// A server that ignores ?name= (older GitHub Enterprise Server) lists
// every runner: the lookup by name follows the pages, within a bound.
func TestFindRunnerFollowsPages(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	g.IgnoreNameFilter = true
	for i := range 150 {
		g.AddRunner("my-org", "other-"+strconv.Itoa(i))
	}
	want := g.AddRunner("my-org", "runpod-pod-job-t1234567890")
	synctest.Test(t, func(t *testing.T) {
		c, _ := fakeClient(t, g)
		r, found, err := c.FindRunner(context.Background(), "runpod-pod-job-t1234567890")
		if err != nil || !found || r.ID != want {
			t.Errorf("FindRunner: %+v %v %v, want runner %d (on the second page)", r, found, err, want)
		}
		for range 1200 {
			g.AddRunner("my-org", "more")
		}
		before := len(g.Requests())
		if _, found, err := c.FindRunner(context.Background(), "no-such-runner"); found || err == nil || !strings.Contains(err.Error(), "pages") {
			t.Errorf("no-such-runner among 1351 runners: %v %v; want an error (the lookup is not complete)", found, err)
		}
		if n := len(g.Requests()) - before; n > MaxFindPages {
			t.Errorf("%d pages read for one lookup, want at most %d", n, MaxFindPages)
		}
	})
}

// GitHub Enterprise Cloud with data residency: the API is
// https://api.<sub>.ghe.com/ (no /api/v3/) and the runner's URL is
// https://<sub>.ghe.com/<scope>.
func TestGHEDataResidency(t *testing.T) {
	for _, in := range []string{"https://api.acme.ghe.com", "https://api.acme.ghe.com/", "https://acme.ghe.com", "https://ACME.ghe.com/"} {
		got, err := CanonicalAPIURL(in, false)
		if err != nil || got != "https://api.acme.ghe.com/" {
			t.Errorf("CanonicalAPIURL(%q) = %q, %v; want https://api.acme.ghe.com/", in, got, err)
		}
	}
	for _, in := range []string{"https://api.acme.ghe.com/api/v3/", "https://acme.ghe.com/x"} {
		if got, err := CanonicalAPIURL(in, false); err == nil {
			t.Errorf("CanonicalAPIURL(%q) = %q: a ghe.com API has no path", in, got)
		}
	}
	g := githubtest.New(testToken)
	defer g.Close()
	c, err := NewClient(Scope{Kind: Org, Owner: "my-org"}, Options{APIURL: "https://api.acme.ghe.com", Token: secret.New(testToken), HTTP: g.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if u := c.RunnerURL(); u != "https://acme.ghe.com/my-org" {
		t.Errorf("RunnerURL = %s, want https://acme.ghe.com/my-org", u)
	}
	if _, _, err := c.JITConfig(context.Background(), "r1", 1, []string{"x"}, "_work"); err != nil {
		t.Fatal(err)
	}
	if p := g.Requests()[0].Path; p != "/orgs/my-org/actions/runners/generate-jitconfig" {
		t.Errorf("request to %s, want /orgs/my-org/... (no /api/v3/ on ghe.com)", p)
	}
	for api, web := range map[string]string{DefaultAPIURL: "https://github.com", "https://ghes.corp/api/v3/": "https://ghes.corp", "https://api.acme.ghe.com/": "https://acme.ghe.com"} {
		if got := ServerURL(api); got != web {
			t.Errorf("ServerURL(%s) = %s, want %s", api, got, web)
		}
	}
}

// Every operation goes to its scope's endpoint: each scope's adapter is
// chosen once, in NewClient.
func TestEachScopeCallsItsEndpoints(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	for _, tc := range []struct {
		scope  string
		prefix string
	}{
		{"my-org", "/api/v3/orgs/my-org/actions/"},
		{"my-org/my-repo", "/api/v3/repos/my-org/my-repo/actions/"},
		{"enterprises/my-ent", "/api/v3/enterprises/my-ent/actions/"},
	} {
		scope, err := ParseScope(tc.scope)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(scope, Options{APIURL: "https://ghes.test/api/v3/", Token: secret.New(testToken), HTTP: g.Client()})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		n := len(g.Requests())
		id, jit, err := c.JITConfig(ctx, "r-"+scope.Owner+scope.Repo, 1, []string{"x"}, "_work")
		if err != nil || jit.Empty() {
			t.Fatalf("%s: JITConfig: %v", tc.scope, err)
		}
		if _, err := c.RegistrationToken(ctx); err != nil {
			t.Errorf("%s: RegistrationToken: %v", tc.scope, err)
		}
		if r, found, err := c.GetRunner(ctx, id); err != nil || !found || r.ID != id {
			t.Errorf("%s: GetRunner: %v %v %v", tc.scope, r, found, err)
		}
		if _, found, err := c.FindRunner(ctx, "r-"+scope.Owner+scope.Repo); err != nil || !found {
			t.Errorf("%s: FindRunner: %v %v", tc.scope, found, err)
		}
		if err := c.DeleteRunner(ctx, id); err != nil {
			t.Errorf("%s: DeleteRunner: %v", tc.scope, err)
		}
		if _, _, err := c.GetRunner(ctx, id); err != nil {
			t.Errorf("%s: GetRunner after delete: %v", tc.scope, err)
		}
		for _, r := range g.Requests()[n:] {
			if !strings.HasPrefix(r.Path, tc.prefix) {
				t.Errorf("%s: %s %s, want it under %s", tc.scope, r.Method, r.Path, tc.prefix)
			}
		}
		_, err = c.RunnerGroupID(ctx, "builders")
		if scope.Kind == Repo && (err == nil || !strings.Contains(err.Error(), "no runner groups") || len(g.Requests()) != n+6) {
			t.Errorf("repository runner group: %v, want a refusal without a request", err)
		}
	}
}

type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

// An answer that never ends is read up to a bound, then fails.
func TestEndlessAnswerBounded(t *testing.T) {
	hc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(endless(' ')), Request: r}, nil
	})}
	c, err := NewClient(Scope{Kind: Org, Owner: "my-org"}, Options{Token: secret.New(testToken), HTTP: hc})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.RegistrationToken(context.Background()); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("an endless answer was accepted")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still reading an endless answer after 30 s")
	}
}
