package jobhandler

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/runpod-workers/worker-github_runner/internal/fitness"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/listener"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
)

// SelfTest is the answer to {"selftest": true}: what the image holds,
// checked without touching GitHub (RunPod Hub tests, endpoint smoke tests).
type SelfTest struct {
	OK             bool     `json:"ok"`
	Problems       []string `json:"problems"`
	Flavour        string   `json:"flavour"`
	CUDA           string   `json:"cuda,omitempty"`
	RunnerRoot     string   `json:"runner_root"`
	RunnerAccount  string   `json:"runner_account"`
	Kaniko         bool     `json:"kaniko"`
	GPUVisible     bool     `json:"gpu_visible"`
	GitHubPATIsSet bool     `json:"github_pat_set"`
	Labels         []string `json:"labels"`
	// Fitness is the fitness check's report with the endpoint's limits
	// (absent when FITNESS_CHECK=off).
	Fitness *fitness.Report `json:"fitness,omitempty"`
}

// selfTest checks the image and the host. An unfit host fails it with the
// jobs' error (a *runpod.UnfitError whose Detail is the report).
func (h *Handler) selfTest(ctx context.Context) (any, error) {
	root := h.runnerRoot()
	account := h.RunnerAccount
	if account == "" {
		account = listener.DefaultUser
	}
	st := &SelfTest{Flavour: h.getenv("WORKER_FLAVOUR"), CUDA: h.getenv("WORKER_CUDA_VERSION"), RunnerRoot: root, RunnerAccount: account,
		GitHubPATIsSet: h.getenv(jobapi.EnvPAT) != "", Labels: h.Labels(nil), Problems: []string{}}
	if fi, err := os.Stat(filepath.Join(root, "bin", "Runner.Listener")); err != nil || fi.Mode()&0o111 == 0 {
		st.Problems = append(st.Problems, "the runner is not installed at "+root)
	}
	if _, err := user.Lookup(account); err != nil {
		st.Problems = append(st.Problems, "the unprivileged runner account "+account+" does not exist")
	}
	if _, err := os.Stat("/kaniko/executor"); err == nil {
		st.Kaniko = true
	}
	unfit := h.selfTestFitness(ctx, st)
	st.OK = len(st.Problems) == 0
	switch {
	case unfit:
		return st, &runpod.UnfitError{Message: "selftest failed: " + strings.Join(st.Problems, "; "), Detail: *st.Fitness}
	case !st.OK:
		return st, errors.New("selftest failed: " + strings.Join(st.Problems, "; "))
	}
	return st, nil
}

// selfTestFitness runs the fitness checks, or with FITNESS_CHECK=off
// looks for a GPU only; it says whether the host is unfit.
func (h *Handler) selfTestFitness(ctx context.Context, st *SelfTest) bool {
	r, err := h.checkFitness(ctx, nil, h.logger().With("request_id", "selftest"))
	st.Fitness = r
	switch {
	case r != nil:
		st.GPUVisible = len(r.GPUs) > 0
		st.Problems = append(st.Problems, r.Problems...)
		return !r.Fit()
	case err != nil:
		st.Problems = append(st.Problems, err.Error())
		return false
	}
	if _, err := os.Stat("/dev/nvidia0"); err == nil {
		st.GPUVisible = true
	} else if _, err := exec.LookPath("nvidia-smi"); err == nil {
		st.GPUVisible = exec.Command("nvidia-smi", "-L").Run() == nil
	}
	if st.Flavour == "gpu" && !st.GPUVisible {
		st.Problems = append(st.Problems, "a GPU image, but no GPU is visible")
	}
	return false
}
