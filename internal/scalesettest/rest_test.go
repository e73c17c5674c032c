package scalesettest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/actions/scaleset"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// TestRESTRunnersWithTheRealClient: internal/github's client lists the
// scale sets' runners through the REST API, page by page, with their
// labels, and removes them; a busy one is refused with GitHub's 422.
func TestRESTRunnersWithTheRealClient(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f)
	ctx := context.Background()
	set, err := c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "gpu", RunnerGroupID: 1,
		Labels: []scaleset.Label{{Name: "gpu", Type: "System"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 105 {
		if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: fmt.Sprintf("gpu-%03d", i)}, set.ID); err != nil {
			t.Fatal(err)
		}
	}
	scope, _ := github.ParseScope("octo")
	gc, err := github.NewClient(scope, github.Options{APIURL: f.URL + "/api/v3/", Token: secret.New(pat), TestOnlyAllowLoopbackHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	gc.Backoff, gc.MaxWait = time.Millisecond, time.Millisecond
	p1, next, err := gc.RunnersPage(ctx, 1)
	if err != nil || len(p1) != 100 || next != 2 {
		t.Fatalf("page 1: %d runners, next %d, %v", len(p1), next, err)
	}
	p2, next, err := gc.RunnersPage(ctx, 2)
	if err != nil || len(p2) != 5 || next != 0 {
		t.Fatalf("page 2: %d runners, next %d, %v", len(p2), next, err)
	}
	r := p2[4]
	if r.Name != "gpu-104" || r.Status != "offline" || r.Busy || !slices.Equal(r.Labels, []string{"gpu"}) {
		t.Fatalf("runner %+v", r)
	}
	busy := p2[3]
	f.mu.Lock()
	f.runners[int(busy.ID)].Job = 1
	f.mu.Unlock()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := gc.DeleteRunner(short, busy.ID); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a busy runner: %v, want it refused until the deadline", err)
	}
	if err := gc.DeleteRunner(ctx, p1[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := gc.DeleteRunner(ctx, p1[0].ID); err != nil { // 404: already gone
		t.Fatal(err)
	}
	if n := len(f.Runners()); n != 104 {
		t.Fatalf("%d runners left, want 104", n)
	}
}
