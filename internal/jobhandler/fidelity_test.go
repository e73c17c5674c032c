package jobhandler

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
)

// An installation token expires (after an hour at GitHub, two seconds
// here): a job that outlasts it must still have its runner removed, with
// a token minted anew.
func TestCleanupAfterTheInstallationTokenExpired(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	e := newEnv(t, map[string]any{"job_seconds": 30})
	e.gh.AppKey, e.gh.AppID = &key.PublicKey, "4242"
	e.gh.InstallationTokenTTL = 2 * time.Second
	in := map[string]any{"github_org": "my-org", "github_pat": "", "github_app_id": 4242, "github_app_installation_id": "77",
		"github_app_private_key": pemKey, "job_timeout": "4s"}
	res, err, rec := e.run(t, context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "job_timeout") {
		t.Fatalf("err = %v\n%s", err, e.logs.String())
	}
	if res == nil || !strings.HasPrefix(res.RunnerRemoved, "by ") {
		t.Errorf("result %+v\n%s", res, e.logs.String())
	}
	mints := 0
	for _, r := range e.gh.Requests() {
		if strings.HasSuffix(r.Path, "/access_tokens") {
			mints++
		}
	}
	if mints < 2 {
		t.Errorf("%d installation tokens minted: cleanup used the expired one", mints)
	}
	if rs := e.gh.Runners(); len(rs) != 0 {
		t.Errorf("runners left registered: %+v", rs)
	}
	e.assertClean(t, rec, "PRIVATE KEY")
}

// GitHub registers the runner, then its answer is lost (502); the retry
// meets 409 for the name. The worker removes the runner of that name and
// registers once more: the job runs and nothing is left.
func TestRegistrationRetryMeetsItsOwnRunner(t *testing.T) {
	e := newEnv(t, nil)
	e.gh.Fail(githubtest.Fault{Match: "generate-jitconfig", Lost: true, Status: 502})
	res, err, rec := e.run(t, context.Background(), map[string]any{"github_org": "my-org"})
	if err != nil || res == nil || !res.JobRan {
		t.Fatalf("err = %v, result %+v\n%s", err, res, e.logs.String())
	}
	if rs := e.gh.Runners(); len(rs) != 0 {
		t.Errorf("runners left registered: %+v", rs)
	}
	e.assertClean(t, rec)
}

// The sweep can wait for a later worker: minting its App token meets a
// rate limit, and it gives up at once instead of waiting for the reset.
func TestSweepMintingFailsOnRateLimit(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b := newBubble(t)
	synctest.Test(t, func(t *testing.T) {
		b.gh.AppKey, b.gh.AppID = &key.PublicKey, "4242"
		b.env["GITHUB_PAT"], b.env["GITHUB_APP_ID"], b.env["GITHUB_APP_INSTALLATION_ID"] = "", "4242", "77"
		b.env["GITHUB_APP_PRIVATE_KEY"] = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
		b.gh.Fail(githubtest.Fault{Match: "access_tokens", RateLimit: true, Reset: time.Minute})
		start := time.Now()
		err := b.h.Sweep(context.Background())
		if err == nil || !strings.Contains(err.Error(), "rate limited") {
			t.Errorf("err = %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the sweep waited %v for the rate limit", d)
		}
	})
}
