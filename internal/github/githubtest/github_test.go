package githubtest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func post(t *testing.T, g *GitHub, path string) int {
	t.Helper()
	resp, err := http.Post(g.URL+path, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func jit(t *testing.T, g *GitHub, name string, labels ...string) int64 {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"runner_group_id":1,"labels":["%s"]}`, name, strings.Join(labels, `","`))
	req, _ := http.NewRequest("POST", g.URL+"/orgs/octo/actions/runners/generate-jitconfig", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("generate-jitconfig: %v %v", resp, err)
	}
	resp.Body.Close()
	return g.Registered()[len(g.Registered())-1].ID
}

// GitHub's matching rule: a job goes to a runner only when every label of
// its runs-on is among the runner's. A runner with only a unique label
// cannot take a runs-on: self-hosted job, which waits; it takes the job
// that asks for its label. The labels stay known after the runner is
// removed.
func TestJobsGoOnlyToRunnersWithAllTheirLabels(t *testing.T) {
	g := New("tok")
	defer g.Close()
	unique := jit(t, g, "r1", "runpod-1-1-ab")
	shared := jit(t, g, "r2", "self-hosted", "linux", "runpod-1-1-cd")
	if g.CanAssign([]string{"self-hosted"}, unique) || !g.CanAssign([]string{"self-hosted"}, shared) ||
		!g.CanAssign([]string{"RUNPOD-1-1-AB"}, unique) || g.CanAssign(nil, unique) || g.CanAssign([]string{"x"}, 12345) {
		t.Error("CanAssign does not follow GitHub's rule")
	}
	g.QueueJob("other", "self-hosted")
	g.QueueJob("intended", "runpod-1-1-ab")
	if code := post(t, g, fmt.Sprintf("/_fake/runners/%d/job", unique)); code != 204 {
		t.Fatalf("the unique runner asked for work: %d", code)
	}
	jobs := g.Jobs()
	if jobs[0].RunnerID != 0 || jobs[1].RunnerID != unique {
		t.Fatalf("jobs %+v: the unique runner must take only the intended job", jobs)
	}
	if code := post(t, g, fmt.Sprintf("/_fake/runners/%d/job", unique)); code != 202 {
		t.Errorf("nothing else for it: %d, want 202", code)
	}
	post(t, g, fmt.Sprintf("/_fake/runners/%d/done", unique))
	if _, ok := g.Runner(unique); ok || !g.Jobs()[1].Done {
		t.Error("the ephemeral runner is still listed after its job, or the job is not done")
	}
	if !g.CanAssign([]string{"runpod-1-1-ab"}, unique) {
		t.Error("a removed runner's labels are forgotten")
	}
	if code := post(t, g, fmt.Sprintf("/_fake/runners/%d/job", shared)); code != 204 || g.Jobs()[0].RunnerID != shared {
		t.Errorf("a self-hosted runner takes the self-hosted job: %d %+v", code, g.Jobs())
	}
}
