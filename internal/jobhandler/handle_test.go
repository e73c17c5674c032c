package jobhandler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
)

// A job error's text is fixed when it is made, after cleanup: it says
// what became of the runner, and nothing changes it afterwards.
func TestJobErrorTextFixedWhenMade(t *testing.T) {
	b := newBubble(t)
	synctest.Test(t, func(t *testing.T) {
		b.h.GitHubBackoff = 50e9
		b.gh.Fail(githubtest.Fault{Match: "generate-jitconfig", Lost: true, Status: 502})
		_, err := b.handle(context.Background(), `{}`)
		var je *JobError
		if !errors.As(err, &je) {
			t.Fatalf("err = %v, not a *JobError", err)
		}
		text := err.Error()
		if !strings.Contains(text, "removed: by the worker") {
			t.Fatalf("the error does not say what became of the runner: %s", text)
		}
		je.Result.RunnerRemoved = "no"
		if err.Error() != text {
			t.Errorf("the error's text changed after it was made:\n%s\n%s", text, err.Error())
		}
	})
}
