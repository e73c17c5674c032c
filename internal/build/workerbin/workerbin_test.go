package workerbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestCheckAndCopy(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixtures are amd64 binaries")
	}
	dir := t.TempDir()
	static := staticWorker(t)
	if err := Check(static, "linux/amd64"); err != nil {
		t.Errorf("static amd64 worker refused: %v", err)
	}
	if err := Check(static, "linux/arm64"); err == nil || !strings.Contains(err.Error(), "not linux/arm64") {
		t.Errorf("wrong platform accepted: %v", err)
	}
	if ls, err := exec.LookPath("ls"); err == nil {
		if err := Check(ls, "linux/amd64"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("dynamic binary accepted: %v", err)
		}
	}
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755)
	if err := Check(text, "linux/amd64"); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("script accepted: %v", err)
	}
	bins, err := ParseFlags([]string{static})
	if err != nil || bins["linux/amd64"] != static {
		t.Fatalf("ParseFlags: %v %v", bins, err)
	}
	if _, err := ParseFlags([]string{"linux/arm64=" + static}); err == nil || !strings.Contains(err.Error(), "--worker-bin linux/arm64=") {
		t.Errorf("ParseFlags accepted an amd64 binary for linux/arm64: %v", err)
	}
	out := filepath.Join(dir, "ctx")
	if err := Copy(out, map[string]string{"linux/amd64": static}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(out, "worker-linux-amd64")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("copied binary: %v %v", st, err)
	}
	if err := Copy(out, map[string]string{"linux/arm64": static}); err == nil {
		t.Error("Copy accepted an amd64 binary for linux/arm64")
	}
	root, err := FindModuleRoot(".")
	if _, serr := os.Stat(filepath.Join(root, "cmd", "worker", "main.go")); err != nil || serr != nil {
		t.Errorf("FindModuleRoot = %q, %v", root, err)
	}
	if _, err := FindModuleRoot(t.TempDir()); err == nil || !strings.Contains(err.Error(), "--worker-bin") {
		t.Errorf("outside the module: %v", err)
	}
}
