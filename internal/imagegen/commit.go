package imagegen

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// fileChange is one file to write (data) or remove.
type fileChange struct {
	path   string
	data   []byte
	remove bool
	// set while committing
	tmp    string // the new content, beside path
	backup string // the old file, moved aside; "" when there was none
	placed bool   // tmp has been renamed to path
}

// renameFile is os.Rename; tests make it fail.
var renameFile = os.Rename

// commitFiles applies every change or none: each new content is written to
// a temporary file beside its target first (where space, permissions and
// names fail); then each old file is moved aside and the new one renamed
// into place; a failure there moves every old file back. The moved-aside
// files are deleted at the end.
func commitFiles(changes []fileChange) (err error) {
	defer func() {
		for i := range changes {
			if changes[i].tmp != "" && !changes[i].placed {
				os.Remove(changes[i].tmp)
			}
		}
	}()
	for i := range changes {
		if err := prepareChange(&changes[i]); err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
	}
	for i := range changes {
		if err := placeChange(&changes[i]); err != nil {
			if uerr := undoChanges(changes[:i+1]); uerr != nil {
				return fmt.Errorf("%w; putting the old files back failed too: %v", err, uerr)
			}
			return fmt.Errorf("%w; nothing was changed", err)
		}
	}
	for _, c := range changes {
		if c.backup != "" {
			os.Remove(c.backup)
		}
	}
	return nil
}

// prepareChange checks the target and writes the new content aside.
func prepareChange(c *fileChange) error {
	if st, err := os.Lstat(c.path); err == nil && !st.Mode().IsRegular() && st.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s exists and is not a file", c.path)
	} else if err != nil && !os.IsNotExist(err) {
		return err
	}
	if c.remove {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".imagegen-*")
	if err != nil {
		return err
	}
	c.tmp = tmp.Name()
	_, err = tmp.Write(c.data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", c.path, err)
	}
	return nil
}

// placeChange moves the old file aside and the new one into place.
func placeChange(c *fileChange) error {
	if _, err := os.Lstat(c.path); err == nil {
		c.backup = filepath.Join(filepath.Dir(c.path), fmt.Sprintf(".imagegen-old-%d-%s", os.Getpid(), filepath.Base(c.path)))
		if err := renameFile(c.path, c.backup); err != nil {
			c.backup = ""
			return fmt.Errorf("move %s aside: %w", c.path, err)
		}
	}
	if c.remove {
		return nil
	}
	if err := renameFile(c.tmp, c.path); err != nil {
		return fmt.Errorf("write %s: %w", c.path, err)
	}
	c.placed = true
	return nil
}

// undoChanges puts every old file back, newest change first.
func undoChanges(changes []fileChange) error {
	var errs []error
	for i := len(changes) - 1; i >= 0; i-- {
		c := &changes[i]
		if c.placed {
			if err := os.Remove(c.path); err != nil {
				errs = append(errs, fmt.Errorf("undo %s: %w", c.path, err))
			}
		}
		if c.backup != "" {
			if err := os.Rename(c.backup, c.path); err != nil {
				errs = append(errs, fmt.Errorf("put back %s (it is at %s): %w", c.path, c.backup, err))
			}
		}
	}
	return errors.Join(errs...)
}
