package listener

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Check says, before anything is registered, whether a listener can run
// from root as account: bin/Runner.Listener is an executable, and the
// account exists and this process can run as it.
func Check(root, account string) error {
	if fi, err := os.Stat(filepath.Join(root, "bin", "Runner.Listener")); err != nil || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("the runner is not installed at %s (no executable bin/Runner.Listener): the image is broken", root)
	}
	_, _, err := credential(account)
	return err
}

// credential resolves the user the listener runs as. Root needs nothing.
func credential(name string) (*syscall.Credential, string, error) {
	if name == "root" {
		return nil, "/root", nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, "", fmt.Errorf("runner user %q does not exist (the image creates %q; runner_user: root is the explicit opt-out): %w", name, DefaultUser, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if uid == 0 {
		return nil, u.HomeDir, nil
	}
	if os.Getuid() != 0 {
		if uint64(os.Getuid()) == uid {
			return nil, u.HomeDir, nil
		}
		return nil, "", fmt.Errorf("cannot run the runner as %q: the worker is not root", name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, u.HomeDir, nil
}

// basics are kept even in allow-list mode: what the runner, CUDA and the
// actions/setup-* tool cache need.
var basics = []string{"PATH", "LANG", "LC_ALL", "TZ", "TERM", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "CUDA_VERSION", "LD_LIBRARY_PATH",
	envToolCache, envToolsDir}

// The tool cache's two names: actions/toolkit's tool-cache reads
// RUNNER_TOOL_CACHE; actions/setup-python and others prefer the older
// AGENT_TOOLSDIRECTORY when it is set. The image sets them (a folder the
// job user may write).
const (
	envToolCache = "RUNNER_TOOL_CACHE"
	envToolsDir  = "AGENT_TOOLSDIRECTORY"
)

// DefaultDeny are removed from the runner's environment whatever is
// configured: credentials, the RunPod platform's variables, and
// ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT (the runner's own log, with the job's
// output, would reach the listener's output the worker reads and streams).
var DefaultDeny = []string{"GITHUB_PAT", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_APP_*", "RUNPOD_*", "ACTIONS_RUNNER_INPUT_*", "RUNNER_ENV_*", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT"}

func match(name string, pats []string) bool {
	for _, p := range pats {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// ScrubEnv returns env without DefaultDeny and deny, and, when allow is
// not empty, with only the allowed variables and the basics.
func ScrubEnv(env, deny, allow []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if match(k, DefaultDeny) || match(k, deny) {
			continue
		}
		if len(allow) > 0 && !match(k, allow) && !match(k, basics) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// toolCache is the tool cache env names: RUNNER_TOOL_CACHE, else
// AGENT_TOOLSDIRECTORY ("" when neither is set). The job gets it under both
// names, so every action finds the same folder.
func toolCache(env []string) string {
	var cache, dir string
	for _, kv := range env {
		switch k, v, _ := strings.Cut(kv, "="); k {
		case envToolCache:
			cache = v
		case envToolsDir:
			dir = v
		}
	}
	if cache != "" {
		return cache
	}
	return dir
}

// runnerEnv is the listener's environment: the scrubbed base, the job
// user's HOME, USER and LOGNAME (its home from the account database, not
// the worker's), one tool cache under both names, and the supervisor's
// hook.
func runnerEnv(cfg *Config, home string, h *hooks) []string {
	env := ScrubEnv(cfg.BaseEnv, cfg.Deny, cfg.Allow)
	drop := map[string]bool{"HOME": true, "USER": true, "LOGNAME": true, "RUNNER_ALLOW_RUNASROOT": true,
		"ACTIONS_RUNNER_HOOK_JOB_STARTED": true, "ACTIONS_RUNNER_HOOK_JOB_COMPLETED": true,
		"ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE": true}
	cache := toolCache(env)
	if cache != "" {
		drop[envToolCache], drop[envToolsDir] = true, true
	}
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	if cache != "" {
		out = append(out, envToolCache+"="+cache, envToolsDir+"="+cache)
	}
	out = append(out, "HOME="+home, "USER="+cfg.User, "LOGNAME="+cfg.User,
		"ACTIONS_RUNNER_HOOK_JOB_STARTED="+h.started,
		// A deprecated runner exits 7, not 1 (Runner.Listener Program.cs).
		"ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1")
	if cfg.User == "root" {
		out = append(out, "RUNNER_ALLOW_RUNASROOT=1")
	}
	return out
}

// listenerCommand is `bin/Runner.Listener run` as the runner user, in a
// process group of its own (so a stop's SIGKILL reaches the job's
// processes too),
// with the runner's environment; the JIT config reaches it there, never in
// argv. Its output goes to w; Wait gives up on the output 5 s after the
// listener exits: a daemon a workflow step left behind (setsid, so out of
// the listener's process group) may hold the output open forever.
func listenerCommand(cfg *Config, cred *syscall.Credential, home string, h *hooks, w io.Writer) (*exec.Cmd, error) {
	bin := filepath.Join(cfg.Root, "bin", "Runner.Listener")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("runner not installed: %w", err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Dir = cfg.Root
	cmd.Env = runnerEnv(cfg, home, h)
	if !cfg.JIT.Empty() {
		cmd.Env = append(cmd.Env, "ACTIONS_RUNNER_INPUT_JITCONFIG="+cfg.JIT.Reveal())
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 5 * time.Second
	return cmd, nil
}
