package listener

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	root := t.TempDir()
	if err := Check(root, "root"); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("no listener: %v", err)
	}
	bin := filepath.Join(root, "bin", "Runner.Listener")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o644)
	if err := Check(root, "root"); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("a listener that is not executable: %v", err)
	}
	os.Chmod(bin, 0o755)
	if err := Check(root, "root"); err != nil {
		t.Errorf("root: %v", err)
	}
	if err := Check(root, "wgr-no-such-user"); err == nil || !strings.Contains(err.Error(), "wgr-no-such-user") {
		t.Errorf("a missing account: %v", err)
	}
}
