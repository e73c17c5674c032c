package listener

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// configFiles are the runner's local configuration: what config.sh or a
// JIT config writes into the runner's folder (actions/runner
// WellKnownConfigFile).
var configFiles = []string{".runner", ".runner_migrated", ".credentials", ".credentials_migrated", ".credentials_rsaparams"}

// resetRoot prepares the runner's folder for a new runner, as a reused
// container (refresh_worker off, or a restarted container) needs: it
// removes the previous runner's configuration (config.sh refuses while
// .runner exists, and an ephemeral runner deletes it only after a
// completed job) and, for an unprivileged account, gives back to it the
// files a root job wrote. The account's processes are killed first, so
// none can swap a folder for a link during the walk.
func resetRoot(cfg *Config, cred *syscall.Credential) error {
	for _, name := range configFiles {
		if err := os.Remove(filepath.Join(cfg.Root, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the previous runner's configuration: %w", err)
		}
	}
	if cred == nil {
		return nil
	}
	killAccount(cfg, cred.Uid)
	changed, skipped, err := chownTree(cfg.Root, int(cred.Uid), int(cred.Gid))
	if changed > 0 {
		cfg.Log.Info("gave the runner's files back to the runner account", "files", changed)
	}
	if skipped > 0 || err != nil {
		cfg.Log.Warn("some files in the runner's folder still belong to another account", "hard_linked_skipped", skipped, "error", err)
	}
	return nil
}

// chownTree gives every file under root not owned by uid:gid to it,
// without following links. A file with several hard links is skipped: it
// may be a link to a file outside the folder. It returns how many files it
// changed and skipped, and the first error.
func chownTree(root string, uid, gid int) (changed, skipped int, first error) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			first = firstErr(first, err)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			first = firstErr(first, err)
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
		if !d.IsDir() && st.Nlink > 1 {
			skipped++
			return nil
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			first = firstErr(first, err)
			return nil
		}
		changed++
		return nil
	})
	return changed, skipped, first
}

// firstErr keeps the first error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
