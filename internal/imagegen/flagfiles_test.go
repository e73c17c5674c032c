package imagegen

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// staticBinary builds a small static Go program for linux/amd64: what a
// prebuilt worker looks like to --worker-bin's check.
func staticBinary(t *testing.T) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixture is an amd64 binary")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/fakeworker\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	p := filepath.Join(t.TempDir(), "worker")
	cmd := exec.Command("go", "build", "-o", p, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return p
}

// --dry-run checks --metadata-file and --worker-bin like a build does, and
// changes nothing on disk.
func TestDryRunChecksFlagFiles(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	static := staticBinary(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--metadata-file", filepath.Join(notDir, "meta.json")}, ExitFailure, "--metadata-file"},
		{[]string{"--worker-bin", script}, ExitFailure, "not an ELF executable"},
		{[]string{"--worker-bin", "linux/amd64=" + script}, ExitFailure, "not an ELF executable"},
		{[]string{"--worker-bin", static, "--worker-bin", "linux/amd64=" + static}, ExitUsage, "both for linux/amd64"},
		{[]string{"--metadata-file", filepath.Join(dir, "new", "sub", "meta.json"), "--worker-bin", static}, ExitOK, "dry run"},
	} {
		code, o, e := run(append([]string{"-f", realFile, "build", "--dry-run"}, tc.args...)...)
		if code != tc.code || !strings.Contains(o+e, tc.want) {
			t.Errorf("%q: exit %d, want %d and %q\n%s%s", tc.args, code, tc.code, tc.want, o, e)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("a dry run created %s/new: %v", dir, err)
	}
}

// --runner-netrc naming a FIFO is refused at once instead of hanging.
func TestRunnerNetrcFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		e    string
	}
	done := make(chan result, 1)
	go func() {
		code, _, e := run("-f", realFile, "build", "--dry-run", "--runner-netrc", fifo)
		done <- result{code, e}
	}()
	select {
	case r := <-done:
		if r.code != ExitFailure || !strings.Contains(r.e, "not a regular file") {
			t.Errorf("exit %d: %s", r.code, r.e)
		}
	case <-time.After(10 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("still reading the FIFO after 10s")
	}
}

// --metadata-file through a symlink writes the file it points at and
// keeps the link; a pipe (/dev/stdout, /dev/fd/N) is written through, not
// replaced.
func TestMetadataFileSymlinkAndPipe(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.json")
	os.WriteFile(target, []byte(strings.Repeat("old content\n", 20)), 0o644)
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := checkWritableFile(link); err != nil {
		t.Fatal(err)
	}
	if err := writeMetadata(link, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symlink: %v %v", link, st.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "{\n  \"variants\": {}\n}\n" {
		t.Errorf("target holds %q", b)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fdPath := "/proc/self/fd/" + strconv.Itoa(int(w.Fd()))
	if code, o, e := run("-f", realFile, "build", "--dry-run", "--metadata-file", fdPath); code != 0 {
		t.Errorf("--metadata-file %s refused: exit %d\n%s%s", fdPath, code, o, e)
	}
	errc := make(chan error, 1)
	go func() { errc <- writeMetadata(fdPath, nil); w.Close() }()
	buf := make([]byte, 100)
	n, _ := r.Read(buf)
	if err := <-errc; err != nil || string(buf[:n]) != "{\n  \"variants\": {}\n}\n" {
		t.Errorf("through a pipe: %v, read %q", err, buf[:n])
	}
}
