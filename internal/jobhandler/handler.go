package jobhandler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/fitness"
	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/listener"
	"github.com/runpod-workers/worker-github_runner/internal/platform"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Handler is the runpod.Handler that runs one GitHub Actions job per
// RunPod job.
type Handler struct {
	Getenv     func(string) string // nil: os.Getenv
	Environ    func() []string     // the runner's starting environment; nil: os.Environ
	RunnerRoot string              // default /actions-runner
	PodID      string
	Log        *slog.Logger
	HTTP       *http.Client
	// Flavour and CUDA label the runner; default WORKER_FLAVOUR and
	// WORKER_CUDA_VERSION, which the image sets.
	Flavour, CUDA string
	// GitHubBackoff is the first wait between GitHub retries (default 1 s).
	GitHubBackoff time.Duration
	// StopGrace is how long the runner gets to stop after its stop signal
	// before SIGKILL (default 45 s, bounded by the cancel budget: see
	// stopGrace).
	StopGrace time.Duration
	// CleanupTimeout bounds removing the runner from GitHub (default 2 min).
	CleanupTimeout time.Duration
	// RunnerAccount is the unprivileged account runner_user "runner" means
	// (default "runner", which the image creates).
	RunnerAccount string
	// Grace is what the worker gives a cancelled job to return and post
	// its result (runpod.Options.Grace; default 70 s, runpod.DefaultGrace). Stopping the runner,
	// finishing a registration in flight and removing the runner all fit
	// in it, with a fifth (at least 2 s) kept for posting the result.
	Grace time.Duration
	// Probe reads the host for the fitness checks (see fitness.go); the
	// zero value is the real host (fitness.Host).
	Probe fitness.Probe
	// SudoersDir is where RUNNER_SUDO's sudoers file goes (default
	// DefaultSudoersDir).
	SudoersDir string

	gateOnce, openOnce sync.Once
	gate               chan struct{} // closed when the first job's registration is over
	// tookJIT says a job brought a JIT config: the worker then runs no
	// sweep. ignoredOnce logs the endpoint's unused GitHub settings once.
	tookJIT     atomic.Bool
	ignoredOnce sync.Once
	// unfit says a fitness check failed: RunPod replaces this worker,
	// which then runs no sweep either.
	unfit atomic.Bool
}

// Registered is closed once the first job's registration is over (the
// runner registered, or the registration failed, or the job ended before
// one): from then on a sweep no longer competes with it for GitHub's
// rate limit.
func (h *Handler) Registered() <-chan struct{} {
	h.gateOnce.Do(func() { h.gate = make(chan struct{}) })
	return h.gate
}

func (h *Handler) registrationOver() {
	h.Registered()
	h.openOnce.Do(func() { close(h.gate) })
}

func (h *Handler) getenv(k string) string {
	if h.Getenv != nil {
		return h.Getenv(k)
	}
	return os.Getenv(k)
}

var nameSafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// RunnerName is unique per pod, job and second, within GitHub's 64
// characters: runpod-<pod>-<job>-t<unix seconds>, at the time the
// registration call starts. GitHub's runner list has no creation time;
// the name carries it, so a later worker can tell a runner a killed
// worker left (see Sweep).
func RunnerName(podID, jobID string, at time.Time) string {
	stamp := fmt.Sprintf("-t%010d", at.Unix())
	body := nameSafe.ReplaceAllString(podID, "-") + "-" + nameSafe.ReplaceAllString(jobID, "-")
	if room := 64 - len("runpod-") - len(stamp); len(body) > room {
		sum := sha256.Sum256([]byte(podID + "/" + jobID))
		body = body[:room-13] + "-" + hex.EncodeToString(sum[:])[:12]
	}
	return "runpod-" + body + stamp
}

var ownRunner = regexp.MustCompile(`^runpod-[A-Za-z0-9._-]+-t([0-9]{10})$`)

// runnerBorn reads the time in a name RunnerName made.
func runnerBorn(name string) (time.Time, bool) {
	m := ownRunner.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return time.Unix(n, 0), true
}

// OwnLabel marks the runners this worker registers: the sweep removes
// only runners that carry it (and the worker's naming scheme).
const OwnLabel = "wgr-ephemeral"

// Labels are what the runner advertises: JIT adds no defaults, so
// self-hosted, linux and the architecture come first.
func (h *Handler) Labels(extra []string) []string {
	p, _ := platform.ByGOARCH(runtime.GOARCH)
	arch := p.RunnerArch
	flavour := h.Flavour
	if flavour == "" {
		flavour = h.getenv("WORKER_FLAVOUR")
	}
	cuda := h.CUDA
	if cuda == "" {
		cuda = h.getenv("WORKER_CUDA_VERSION")
	}
	ls := []string{"self-hosted", "linux", arch, "runpod", OwnLabel}
	if h.PodID != "" {
		ls = append(ls, nameSafe.ReplaceAllString(h.PodID, "-"))
	}
	if flavour != "" {
		ls = append(ls, flavour)
	}
	if cuda != "" {
		ls = append(ls, "cuda-"+cuda)
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range append(ls, extra...) {
		if l != "" && !seen[strings.ToLower(l)] {
			seen[strings.ToLower(l)] = true
			out = append(out, l)
		}
	}
	return out
}

// client is a GitHub client for scope with the input's credential. A
// GitHub App's installation token is minted here, and anew whenever it
// nears its expiry (a job may outlast it; cleanup must not fail for it).
// failOnRateLimit makes every call, minting included, fail at once on a
// rate limit (the sweep).
func (h *Handler) client(ctx context.Context, in *Input, scope github.Scope, redactor *secret.Redactor, log *slog.Logger, failOnRateLimit bool) (*github.Client, error) {
	o := github.Options{APIURL: in.APIURL, Token: in.PAT, HTTP: h.HTTP, Log: log, FailOnRateLimit: failOnRateLimit, TestOnlyAllowLoopbackHTTP: in.TestOnlyAllowLoopbackHTTP}
	var gh *github.Client
	var err error
	if o.Token.Empty() && in.App != nil {
		gh, err = github.NewAppClient(ctx, scope, o, *in.App, func(tok secret.Value) { redactor.Add(tok) })
	} else {
		gh, err = github.NewClient(scope, o)
	}
	if err == nil && h.GitHubBackoff > 0 {
		gh.Backoff = h.GitHubBackoff
		gh.MaxWait = 20 * h.GitHubBackoff
	}
	return gh, err
}

// runnerRoot is RunnerRoot, else RUNNER_ROOT (the image sets it), else
// /actions-runner.
func (h *Handler) runnerRoot() string {
	if h.RunnerRoot != "" {
		return h.RunnerRoot
	}
	if r := h.getenv("RUNNER_ROOT"); r != "" {
		return r
	}
	return listener.DefaultRoot
}

func (h *Handler) environ() []string {
	if h.Environ != nil {
		return h.Environ()
	}
	return os.Environ()
}
