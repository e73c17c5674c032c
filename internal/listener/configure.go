package listener

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// ReadRunnerID reads the runner's id from the .runner file config.sh
// writes (token mode). The file may start with a UTF-8 BOM.
func ReadRunnerID(root string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(root, ".runner"))
	if err != nil {
		return 0, err
	}
	b = []byte(strings.TrimPrefix(string(b), "\ufeff"))
	var f struct {
		AgentID json.Number `json:"agentId"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, fmt.Errorf(".runner: %w", err)
	}
	id, err := f.AgentID.Int64()
	if err != nil || id <= 0 {
		return 0, fmt.Errorf(".runner: agentId %.40q is not a runner id", f.AgentID)
	}
	return id, nil
}

// ConfigureOptions are config.sh's arguments in token mode.
type ConfigureOptions struct {
	URL         string
	Token       secret.Value
	Name        string
	Labels      []string
	RunnerGroup string
	WorkFolder  string
}

// Configure registers the runner with a registration token, as config.sh
// does (bin/Runner.Listener configure), without a shell, after removing
// the previous runner's configuration (see resetRoot). The token goes
// through the environment, not argv. The runner may update itself: a
// self-update's exit restarts it (see Run).
func Configure(ctx context.Context, cfg Config, o ConfigureOptions) error {
	cfg.defaults()
	cfg.Redactor.Add(o.Token)
	cred, home, err := credential(cfg.User)
	if err != nil {
		return err
	}
	if cred != nil {
		defer enterAccount(cred.Uid)()
	}
	if err := resetRoot(&cfg, cred); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.Root, "bin", "Runner.Listener"), o.args()...)
	cmd.Dir = cfg.Root
	cmd.Env = append(ScrubEnv(cfg.BaseEnv, cfg.Deny, cfg.Allow), "HOME="+home, "ACTIONS_RUNNER_INPUT_TOKEN="+o.Token.Reveal())
	if cfg.User == "root" {
		cmd.Env = append(cmd.Env, "RUNNER_ALLOW_RUNASROOT=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	out, err := cmd.CombinedOutput()
	passLines(&cfg, string(out))
	if err != nil {
		last := lastLine(string(out))
		return fmt.Errorf("configure runner: %v: %s", err, clipLine(cfg.Redactor, []byte(last), len(last), 1<<10))
	}
	return nil
}

func (o ConfigureOptions) args() []string {
	args := []string{"configure", "--unattended", "--ephemeral", "--no-default-labels",
		"--url", o.URL, "--name", o.Name, "--labels", strings.Join(o.Labels, ","), "--work", o.WorkFolder, "--replace"}
	if o.RunnerGroup != "" {
		args = append(args, "--runnergroup", o.RunnerGroup)
	}
	return args
}

// passLines passes out's lines, redacted and cut, to OnLine.
func passLines(cfg *Config, out string) {
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && cfg.OnLine != nil {
			cfg.OnLine(clipLine(cfg.Redactor, []byte(l), len(l), cfg.MaxLine))
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
