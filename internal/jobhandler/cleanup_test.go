package jobhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
	"github.com/runpod-workers/worker-github_runner/internal/runpod/runpodtest"
)

// bubble is a handler and a fake GitHub reached in-process over https,
// for tests of what happens before the runner starts: they run in a
// synctest bubble, so minutes of GitHub waits take no time.
type bubble struct {
	gh   *githubtest.GitHub
	h    *Handler
	env  map[string]string
	logs *runpodtest.LogBuffer
}

// newBubble must be called outside the bubble: the fake's listener must
// not live in one.
func newBubble(t *testing.T) *bubble {
	t.Helper()
	gh := githubtest.New(pat)
	t.Cleanup(gh.Close)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.WriteFile(filepath.Join(root, "bin", "Runner.Listener"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	b := &bubble{gh: gh, logs: &runpodtest.LogBuffer{}, env: map[string]string{
		"GITHUB_PAT": pat, "GITHUB_ORG": "my-org", "GITHUB_API_URL": "https://ghes.test/api/v3/",
		"RUNNER_ALLOW_ROOT": "1", "RUNNER_USER": "root", "RUNPOD_AI_API_KEY": "rpa_SECRETKEY_abcdef",
	}}
	b.h = &Handler{
		Getenv:     func(k string) string { return b.env[k] },
		Environ:    func() []string { return nil },
		HTTP:       gh.Client(),
		RunnerRoot: root,
		PodID:      "pod42",
		Log:        slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	return b
}

func (b *bubble) handle(ctx context.Context, input string) (*Result, error) {
	out, err := b.h.Handle(ctx, &runpod.Job{ID: "job-1", Input: []byte(input)}, &recorder{})
	res, _ := out.(*Result)
	var je *JobError
	if errors.As(err, &je) {
		res = je.Result
	}
	return res, err
}

func (b *bubble) registrations() int {
	n := 0
	for _, r := range b.gh.Requests() {
		if strings.HasSuffix(r.Path, "generate-jitconfig") {
			n++
		}
	}
	return n
}

// GitHub registers the runner but its answer is lost (a 502, or no answer
// before the client's timeout): the retry meets 409. The worker finds the
// runner by its name and removes it before failing.
func TestLostRegistrationAnswer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault githubtest.Fault
	}{
		{"502 after registering", githubtest.Fault{Match: "generate-jitconfig", Lost: true, Status: 502}},
		{"no answer before the timeout", githubtest.Fault{Match: "generate-jitconfig", Delay: 61 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBubble(t)
			synctest.Test(t, func(t *testing.T) {
				b.h.HTTP = &http.Client{Transport: b.gh.Client().Transport, Timeout: 60 * time.Second}
				b.h.GitHubBackoff = 50 * time.Second // the retry comes after the lost registration completed
				b.gh.Fail(tc.fault)
				res, err := b.handle(context.Background(), `{}`)
				time.Sleep(2 * time.Minute) // whatever GitHub still does ends
				if rs := b.gh.Runners(); len(rs) != 0 {
					t.Errorf("runners left registered: %+v", rs)
				}
				if err == nil || res == nil || res.RunnerRemoved != "by the worker" || !strings.Contains(err.Error(), "removed: by the worker") {
					t.Errorf("err = %v, result %+v", err, res)
				}
				if b.registrations() < 2 {
					t.Errorf("%d registrations: the lost answer was not retried", b.registrations())
				}
			})
		})
	}
}

// A cancel (RunPod cancel, SIGTERM) during a slow registration: the call
// in flight is finished, then the runner is removed, all within the grace.
func TestCancelDuringSlowRegistration(t *testing.T) {
	for _, tc := range []struct {
		name        string
		delay       time.Duration
		storm       bool // GitHub answers 500 to everything after registering
		wantRemoved string
	}{
		{"registration completes", 4 * time.Second, false, "by the worker"},
		// GitHub registers after the worker gave up: a later sweep's job,
		// and the result says a runner may still appear.
		{"registration slower than the grace", 10 * time.Minute, false, "unknown"},
		{"500s after registering", 4 * time.Second, true, "no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBubble(t)
			synctest.Test(t, func(t *testing.T) {
				b.h.Grace = 25 * time.Second
				b.h.GitHubBackoff = time.Second // the real default: 5 attempts take 8 to 15 s
				b.gh.Fail(githubtest.Fault{Match: "generate-jitconfig", Delay: tc.delay})
				if tc.storm {
					b.gh.Fail(githubtest.Fault{Match: "/runners", Status: 500, Times: 10000})
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancelAt := time.Now().Add(time.Second)
				time.AfterFunc(time.Second, cancel)
				res, err := b.handle(ctx, `{}`)
				elapsed := time.Since(cancelAt)
				if err == nil || !strings.Contains(err.Error(), "cancel") {
					t.Errorf("err = %v", err)
				}
				if res == nil || res.RunnerRemoved != tc.wantRemoved {
					t.Errorf("result %+v, want runner_removed %q", res, tc.wantRemoved)
				}
				if tc.wantRemoved == "unknown" && (err == nil || !strings.Contains(err.Error(), "may still appear")) {
					t.Errorf("err = %v: it must say a runner may still appear", err)
				}
				if elapsed > 25*time.Second-3*time.Second {
					t.Errorf("returned %v after the cancel: no time left in the 25 s grace to post the result", elapsed)
				}
				time.Sleep(15 * time.Minute) // whatever GitHub still does ends
				if !tc.storm && tc.delay < time.Minute {
					if rs := b.gh.Runners(); len(rs) != 0 {
						t.Errorf("runners left registered: %+v", rs)
					}
				}
			})
		})
	}
}

// SIGTERM mid-job while GitHub answers 500 to everything: removing the
// runner gives up in time for the result to be posted within the grace.
func TestCleanupFitsTheGrace(t *testing.T) {
	e := newEnv(t, map[string]any{"job_seconds": 30})
	e.handler.Grace = 6 * time.Second
	e.handler.GitHubBackoff = time.Second
	e.handler.CleanupTimeout = 0 // the default, 2 minutes
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	go func() {
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.logs.String(), "Running job") && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		e.gh.Fail(githubtest.Fault{Match: "/runners", Status: 500, Times: 10000})
		cancelled = time.Now()
		cancel()
	}()
	res, err, _ := e.run(t, ctx, map[string]any{"github_org": "my-org"})
	took := time.Since(cancelled)
	t.Logf("returned %v after SIGTERM (grace %v)", took.Round(time.Millisecond), e.handler.Grace)
	if err == nil || res == nil || res.RunnerRemoved != "no" {
		t.Errorf("err = %v, result %+v", err, res)
	}
	if took > e.handler.Grace-time.Second {
		t.Errorf("returned %v after SIGTERM, with a %v grace", took.Round(time.Millisecond), e.handler.Grace)
	}
}

var ownName = regexp.MustCompile(`^runpod-[A-Za-z0-9._-]+-t[0-9]{10}$`)

func TestRunnerName(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range [][2]string{{"pod42", "job-1"}, {"p", strings.Repeat("j", 200)}, {"pod/with spaces", "sync-0f3e!x-u1"}, {"abcdefghijklmn", "a1b2c3d4-e5f6-47a8-b9c0-d1e2f3a4b5c6-u1"}} {
		n := RunnerName(c[0], c[1], at)
		if len(n) > 64 || !ownName.MatchString(n) {
			t.Errorf("%q: %d characters, not the worker's scheme", n, len(n))
		}
		if got, ok := runnerBorn(n); !ok || !got.Equal(at) {
			t.Errorf("%q: born %v %v", n, got, ok)
		}
	}
	if RunnerName("p", strings.Repeat("j", 200), at) == RunnerName("p", strings.Repeat("j", 199)+"k", at) {
		t.Error("long names collide")
	}
	for _, n := range []string{"runpod-pod42-job-1", "builder-1", "runpod-x-t12345", "runpod--t1777636800x"} {
		if _, ok := runnerBorn(n); ok {
			t.Errorf("%q taken for the worker's scheme", n)
		}
	}
}

// On start, a worker with endpoint credentials removes its own runners
// that are offline and older than RUNNER_SWEEP_AFTER (left by a worker
// that was killed), and nothing else.
func TestSweepOfflineLeftovers(t *testing.T) {
	b := newBubble(t)
	synctest.Test(t, func(t *testing.T) {
		b.env["ALLOWED_GITHUB_SCOPES"] = "my-org,octo/hello-world"
		now := time.Now()
		old, young := now.Add(-3*time.Hour), now.Add(-90*time.Minute)
		b.env["RUNNER_SWEEP_AFTER"] = "2h"
		add := func(scope, name, status string, busy bool) int64 {
			id := b.gh.AddRunner(scope, name, "self-hosted", "runpod", OwnLabel)
			b.gh.SetRunner(id, status, busy)
			return id
		}
		gone := []int64{
			add("my-org", RunnerName("podA", "job-1", old), "offline", false),
			add("octo/hello-world", RunnerName("podB", "job-2", old), "offline", false),
		}
		kept := []int64{
			add("my-org", RunnerName("podC", "job-3", young), "offline", false), // may still be starting
			add("my-org", RunnerName("podD", "job-4", old), "online", false),    // alive
			add("my-org", RunnerName("podE", "job-5", old), "online", true),     // running a job
			add("my-org", "runpod-podF-job-6", "offline", false),                // not the worker's scheme
			add("my-org", "builder-7", "offline", false),
			b.gh.AddRunner("my-org", RunnerName("podG", "job-8", old), "self-hosted", "runpod"), // not the worker's label
			add("other-org", RunnerName("podH", "job-9", old), "offline", false),                // not an allowed scope
			add("my-org/unlisted", RunnerName("podJ", "job-11", old), "offline", false),         // a repository not listed
		}
		for i := range 130 { // the old one below is on the second page
			add("my-org", RunnerName("young", fmt.Sprint(i), young), "offline", false)
		}
		gone = append(gone, add("my-org", RunnerName("podI", "job-10", old), "offline", false))

		if err := b.h.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		left := map[int64]bool{}
		for _, r := range b.gh.Runners() {
			left[r.ID] = true
		}
		for _, id := range gone {
			if left[id] {
				t.Errorf("runner %d (offline, 3 h old) was not swept", id)
			}
		}
		for _, id := range kept {
			if !left[id] {
				t.Errorf("runner %d was swept", id)
			}
		}
		if !strings.Contains(b.logs.String(), "removed an offline runner") {
			t.Errorf("the sweep is not logged:\n%s", b.logs.String())
		}

		// Off switch; a shorter threshold; no endpoint credential.
		b.env["RUNNER_SWEEP"] = "off"
		before := len(b.gh.Requests())
		if err := b.h.Sweep(context.Background()); err != nil || len(b.gh.Requests()) != before {
			t.Errorf("RUNNER_SWEEP=off: %v, %d requests", err, len(b.gh.Requests())-before)
		}
		b.env["RUNNER_SWEEP"], b.env["RUNNER_SWEEP_AFTER"] = "", "5m"
		if err := b.h.Sweep(context.Background()); err == nil || !strings.Contains(err.Error(), "RUNNER_SWEEP_AFTER") {
			t.Errorf("a threshold shorter than a runner's start: %v", err)
		}
		b.env["RUNNER_SWEEP_AFTER"] = "3600" // seconds: now the young ones are old enough
		if err := b.h.Sweep(context.Background()); err != nil || len(b.gh.Runners()) != len(kept)-1 {
			t.Errorf("RUNNER_SWEEP_AFTER=3600: %v, %d runners left, want %d", err, len(b.gh.Runners()), len(kept)-1)
		}
		b.env["GITHUB_PAT"], b.env["RUNNER_SWEEP_AFTER"] = "", ""
		before = len(b.gh.Requests())
		if err := b.h.Sweep(context.Background()); err != nil || len(b.gh.Requests()) != before {
			t.Errorf("no endpoint credential: %v, %d requests", err, len(b.gh.Requests())-before)
		}
	})
}
