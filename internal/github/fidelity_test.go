package github

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

func mints(g *githubtest.GitHub) int {
	n := 0
	for _, r := range g.Requests() {
		if strings.HasSuffix(r.Path, "/access_tokens") {
			n++
		}
	}
	return n
}

// An installation token lives an hour: the app client mints a new one
// before it runs out, so a call hours later still authenticates.
func TestAppClientMintsBeforeExpiry(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	app := testApp(g)
	g.GHES = true
	synctest.Test(t, func(t *testing.T) {
		var got []secret.Value
		c, err := NewAppClient(context.Background(), Scope{Kind: Org, Owner: "my-org"}, Options{APIURL: "https://ghes.test", HTTP: g.Client()}, app,
			func(v secret.Value) { got = append(got, v) })
		if err != nil {
			t.Fatal(err)
		}
		list := func(when string) {
			t.Helper()
			if _, _, err := c.RunnersPage(context.Background(), 1); err != nil {
				t.Fatalf("%s: %v", when, err)
			}
		}
		list("at once")
		time.Sleep(50 * time.Minute)
		list("after 50 minutes")
		if n := mints(g); n != 1 {
			t.Errorf("%d tokens minted within the first token's life, want 1", n)
		}
		time.Sleep(6 * time.Minute) // 4 minutes left: under TokenRefreshMargin
		list("4 minutes before expiry")
		time.Sleep(3 * time.Hour)
		list("hours later")
		if n := mints(g); n != 3 || len(got) != 3 {
			t.Errorf("%d tokens minted (%d reported), want 3", n, len(got))
		}
	})
}

// A GitHub Enterprise Server answers its API only under /api/v3/.
func TestFakeGHESNeedsTheAPIPrefix(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	g.GHES = true
	req, _ := http.NewRequest("GET", "https://ghes.test/orgs/my-org/actions/runners", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := g.Client().Do(req)
	if err != nil || resp.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("without /api/v3/: %v %v", err, resp)
	}
	c, err := NewClient(Scope{Kind: Org, Owner: "my-org"}, Options{APIURL: "https://ghes.test", Token: secret.New(testToken), HTTP: g.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.RunnersPage(context.Background(), 1); err != nil {
		t.Errorf("the client's GHES URL: %v", err)
	}
}

// generate-jitconfig is not idempotent: GitHub registers the runner and
// the answer is lost (502); the retry meets 409. The client removes the
// runner of that name and registers once more.
func TestJITConfigRetryMeetsItsOwnRunner(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	synctest.Test(t, func(t *testing.T) {
		c, logs := fakeClient(t, g)
		g.Fail(githubtest.Fault{Match: "generate-jitconfig", Lost: true, Status: 502})
		id, jit, err := c.JITConfig(context.Background(), "runpod-x-t0000000001", 1, []string{"self-hosted"}, "_work")
		if err != nil || jit.Empty() {
			t.Fatalf("JITConfig: %v", err)
		}
		rs := g.Runners()
		if len(rs) != 1 || rs[0].ID != id {
			t.Errorf("runners %+v, want only %d", rs, id)
		}
		if !strings.Contains(logs.String(), "answer was lost") {
			t.Errorf("the removal is not logged:\n%s", logs.String())
		}
	})
}

// A 409 without a lost answer before it is another runner's name: it is
// not removed.
func TestJITConfigConflictLeavesOthersAlone(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	synctest.Test(t, func(t *testing.T) {
		c, _ := fakeClient(t, g)
		g.AddRunner("my-org", "taken")
		_, _, err := c.JITConfig(context.Background(), "taken", 1, []string{"self-hosted"}, "_work")
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("err = %v", err)
		}
		if len(g.Runners()) != 1 {
			t.Errorf("the other runner was removed")
		}
	})
}

// config.sh's registration: a duplicate name is refused unless --replace
// is given, which takes the existing runner (and its id) over.
func TestFakeRegisterReplace(t *testing.T) {
	g := githubtest.New(testToken)
	defer g.Close()
	old := g.AddRunner("my-org", "dup")
	register := func(replace bool) int {
		t.Helper()
		c, _ := fakeClient(t, g)
		tok, err := c.RegistrationToken(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		body := `{"token":"` + tok.Reveal() + `","name":"dup","labels":["x"],"replace":` + strconv.FormatBool(replace) + `}`
		resp, err := g.Client().Post("https://ghes.test/_fake/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := register(false); st != http.StatusConflict {
		t.Errorf("duplicate without --replace: %d", st)
	}
	if st := register(true); st != http.StatusCreated {
		t.Errorf("duplicate with --replace: %d", st)
	}
	if rs := g.Runners(); len(rs) != 1 || rs[0].ID != old || rs[0].Labels[0] != "x" {
		t.Errorf("runners %+v", rs)
	}
}
