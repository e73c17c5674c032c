package jobhandler

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// RUNNER_SUDO lets the job user (runner) use passwordless sudo, as
// GPU CI's `apt-get install` steps expect. A job that may use sudo is
// root: it can read the worker's environment and memory, so the setting
// is refused on an endpoint that holds a GitHub credential, and while it
// is on only jobs that bring a JIT config (which carry no credential) are
// taken.

// EnvSudo lets the job user use passwordless sudo (default off).
const EnvSudo = "RUNNER_SUDO"

// DefaultSudoersDir is Handler.SudoersDir's default.
const DefaultSudoersDir = "/etc/sudoers.d"

// sudoersFile is the file's name in the sudoers folder: sudo reads every
// file there whose name has no '.' and does not end in '~'.
const sudoersFile = "wgr-runner"

// accountName is an account name safe to write into a sudoers rule.
var accountName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// endpointCredentialVars are the endpoint's GitHub credential variables
// that are set.
func endpointCredentialVars(getenv func(string) string) []string {
	var set []string
	for _, k := range []string{jobapi.EnvPAT, "GITHUB_TOKEN", "GH_TOKEN", jobapi.EnvAppID, jobapi.EnvAppInstall, jobapi.EnvAppPrivateKey} {
		if strings.TrimSpace(getenv(k)) != "" {
			set = append(set, k)
		}
	}
	return set
}

// sudoConflict is why RUNNER_SUDO cannot be on with the endpoint's
// credential variables set ("" when it can).
func sudoConflict(getenv func(string) string) string {
	set := endpointCredentialVars(getenv)
	if !truthy(getenv(EnvSudo)) || len(set) == 0 {
		return ""
	}
	return fmt.Sprintf("%s is on, but the endpoint holds a GitHub credential (%s): a job that may use sudo can read the worker's environment and memory, and the credential with them; "+
		"remove the credential from the endpoint (its jobs then bring a jitconfig) or turn %s off", EnvSudo, strings.Join(set, ", "), EnvSudo)
}

// checkSudo refuses a job while RUNNER_SUDO is on, unless the endpoint
// holds no credential and the job brings a JIT config.
func (h *Handler) checkSudo(in *Input) error {
	if c := sudoConflict(h.getenv); c != "" {
		return errors.New(c)
	}
	if truthy(h.getenv(EnvSudo)) && in.JIT == nil {
		return fmt.Errorf("%s is on: this endpoint takes only jobs with a jitconfig; a job that carries a GitHub credential would have it in the worker's memory, which a job that may use sudo can read", EnvSudo)
	}
	return nil
}

// jobUser settles what the job user may do before anything starts:
// RUNNER_SUDO's checks, then its sudo rule (see sudoers). A JIT job
// refused here leaves its runner to the minting side.
func (h *Handler) jobUser(in *Input, jobID string) (func(), error) {
	log := h.logger().With("request_id", jobID)
	err := h.checkSudo(in)
	var undo func()
	if err == nil {
		undo, err = h.sudoers(in, log)
	}
	if err != nil {
		return nil, notStarted(err, in, log)
	}
	return undo, nil
}

// sudoers gives the job user passwordless sudo for this job when
// RUNNER_SUDO is on (and the runner is not root, which needs none), and
// otherwise makes sure an earlier job's rule is gone. The returned func
// removes the rule after the job.
func (h *Handler) sudoers(in *Input, log *slog.Logger) (func(), error) {
	dir := h.sudoersDir()
	account := h.account(in.RunnerUser)
	if !truthy(h.getenv(EnvSudo)) || account == "root" {
		if err := removeSudoers(dir); err != nil {
			return nil, fmt.Errorf("an earlier job's sudo rule could not be removed, so this job would run with sudo: %w", err)
		}
		return func() {}, nil
	}
	if err := writeSudoers(dir, account); err != nil {
		return nil, err
	}
	log.Warn("the job user may use sudo for this job ("+EnvSudo+" is on)", "account", account)
	return func() {
		if err := removeSudoers(dir); err != nil {
			log.Error("could not remove the job user's sudo rule: a later job on this worker removes it before its runner starts", "error", err)
		}
	}, nil
}

func (h *Handler) sudoersDir() string {
	if h.SudoersDir != "" {
		return h.SudoersDir
	}
	return DefaultSudoersDir
}

// writeSudoers writes "<account> ALL=(ALL) NOPASSWD:ALL" into dir's
// sudoersFile, root's and mode 0440, atomically: under a name sudo skips
// (it holds a '.'), checked with `visudo -c` where visudo exists, then
// renamed into place.
func writeSudoers(dir, account string) error {
	if !accountName.MatchString(account) || account == "root" {
		return fmt.Errorf("%s: the runner account %.40q is not an account name sudo can be given for", EnvSudo, account)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is on, but %s is not a folder: the image has no sudo (install it, or turn %s off)", EnvSudo, dir, EnvSudo)
	}
	f, err := os.CreateTemp(dir, "."+sudoersFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("%s: write the sudo rule: %w", EnvSudo, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone after the rename
	err = errors.Join(writeRule(f, account), f.Close())
	if err == nil {
		err = validateSudoers(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, sudoersFile))
	}
	if err != nil {
		return fmt.Errorf("%s: write the sudo rule: %w", EnvSudo, err)
	}
	return nil
}

func writeRule(f *os.File, account string) error {
	if _, err := f.WriteString(account + " ALL=(ALL) NOPASSWD:ALL\n"); err != nil {
		return err
	}
	if err := f.Chmod(0o440); err != nil {
		return err
	}
	if os.Getuid() == 0 {
		if err := f.Chown(0, 0); err != nil {
			return err
		}
	}
	return f.Sync()
}

// validateSudoers checks the file with `visudo -c -f`, where visudo is
// installed.
func validateSudoers(path string) error {
	visudo, err := exec.LookPath("visudo")
	if err != nil {
		return nil
	}
	if out, err := exec.Command(visudo, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
		return fmt.Errorf("visudo -c refused it: %v: %.200s", err, out)
	}
	return nil
}

// removeSudoers removes dir's sudoersFile, if any.
func removeSudoers(dir string) error {
	if err := os.Remove(filepath.Join(dir, sudoersFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// SudoOn reports whether the endpoint turned RUNNER_SUDO on. Such a
// worker must be replaced after each job (refresh_worker): a job that
// may use sudo can leave root processes behind, which the worker does
// not kill and which could read the next job's JIT config.
func SudoOn(getenv func(string) string) bool { return truthy(getenv(EnvSudo)) }
