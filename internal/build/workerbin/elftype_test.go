package workerbin

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/platform"
)

// staticWorker builds a small static Go program for this machine: what a
// prebuilt worker looks like to Check (CGO_ENABLED=0, no interpreter, no
// shared libraries), without depending on cmd/worker compiling.
func staticWorker(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/fakeworker\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"worker\") }\n"), 0o644)
	p := filepath.Join(t.TempDir(), "worker")
	cmd := exec.Command("go", "build", "-o", p, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return p
}

// withELFType copies an ELF file with its e_type (offset 16, little endian)
// changed.
func withELFType(t *testing.T, src string, typ byte) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b[16], b[17] = typ, 0
	p := filepath.Join(t.TempDir(), "patched")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A shared library or an object file is not a static worker, even without
// an interpreter.
func TestCheckRefusesLibraries(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixtures are amd64 binaries")
	}
	platform := "linux/amd64"
	static := staticWorker(t)
	cases := map[string]string{
		withELFType(t, static, 3): "shared library", // ET_DYN without the PIE flag
		withELFType(t, static, 1): "not an executable",
	}
	for _, dir := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"} {
		if p := filepath.Join(dir, "libz.so.1"); fileExists(p) {
			cases[p] = "shared library"
			break
		}
	}
	for path, want := range cases {
		err := Check(path, platform)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%s) = %v, want an error saying %q", path, err, want)
		}
		if _, err := ParseFlags([]string{path}); err == nil {
			t.Errorf("ParseFlags(%s) accepted it", path)
		}
	}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// A static position-independent executable (ET_DYN marked PIE, no
// interpreter, no DT_NEEDED) is a static worker too.
func TestCheckAcceptsStaticPIE(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixtures are amd64 binaries")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to link a static PIE with")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.c"), []byte("int main(void) { return 0; }\n"), 0o644)
	out := filepath.Join(dir, "spie")
	if b, err := exec.Command(gcc, "-static-pie", "-o", out, filepath.Join(dir, "a.c")).CombinedOutput(); err != nil {
		t.Skipf("gcc cannot link a static PIE here (%v): %s", err, b)
	}
	if err := Check(out, "linux/amd64"); err != nil {
		t.Errorf("static PIE refused: %v", err)
	}
}

// patched copies src with b[off:off+len(data)] replaced.
func patched(t *testing.T, src string, off int, data ...byte) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[off:], data)
	p := filepath.Join(t.TempDir(), "patched")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A binary that needs shared libraries is refused even without an
// interpreter (PT_INTERP): /bin/true with its PT_INTERP header blanked.
func TestCheckRefusesDTNeeded(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixtures are amd64 binaries")
	}
	f, err := elf.Open("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	interp := -1
	for i, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp = i
		}
	}
	libs, _ := f.ImportedLibraries()
	if interp < 0 || len(libs) == 0 {
		t.Fatalf("/bin/true: PT_INTERP at %d, DT_NEEDED %v: not the dynamic binary this test needs", interp, libs)
	}
	// e_phoff is at 32 (8 bytes), e_phentsize at 54 (2 bytes); p_type
	// starts each entry.
	b, _ := os.ReadFile("/bin/true")
	phoff := int(binary.LittleEndian.Uint64(b[32:]))
	phentsize := int(binary.LittleEndian.Uint16(b[54:]))
	p := patched(t, "/bin/true", phoff+interp*phentsize, 0, 0, 0, 0) // PT_NULL
	err = Check(p, "linux/amd64")
	if err == nil || !strings.Contains(err.Error(), "needs shared libraries ("+libs[0]) {
		t.Errorf("Check = %v, want it to name %s", err, libs[0])
	}
}

// A binary for another OS (ELF OSABI FreeBSD) is refused.
func TestCheckRefusesOtherOSABI(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixtures are amd64 binaries")
	}
	p := patched(t, staticWorker(t), 7, byte(elf.ELFOSABI_FREEBSD))
	if err := Check(p, "linux/amd64"); err == nil || !strings.Contains(err.Error(), "not Linux") {
		t.Errorf("Check = %v, want a refusal saying not Linux", err)
	}
}

// A FIFO (or any file that is not regular) is refused at once, not read
// until something writes to it.
func TestCheckRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, call := range []func() error{
		func() error { return Check(fifo, "linux/amd64") },
		func() error { _, err := ParseFlags([]string{fifo}); return err },
		func() error { _, err := ParseFlags([]string{"linux/amd64=" + fifo}); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("err = %v, want one saying it is not a regular file", err)
			}
		case <-time.After(5 * time.Second):
			// Unblock the reader so the goroutine ends.
			if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
			t.Fatal("still reading the FIFO after 5s")
		}
	}
}

// Two --worker-bin for one platform is a usage mistake, not last-wins.
func TestParseFlagsRefusesTwoBinariesForOnePlatform(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixtures are amd64 binaries")
	}
	static := staticWorker(t)
	_, err := ParseFlags([]string{static, "linux/amd64=" + static})
	if !errors.Is(err, ErrDuplicatePlatform) || !strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("err = %v", err)
	}
}

// A bare PATH that is not ELF says so.
func TestParseFlagsNonELF(t *testing.T) {
	text := filepath.Join(t.TempDir(), "script")
	os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755)
	if _, err := ParseFlags([]string{text}); err == nil || !strings.Contains(err.Error(), "not an ELF executable") {
		t.Errorf("err = %v", err)
	}
}

// Copy copies the very file it checked: replacing the path in between
// changes nothing.
func TestCopyCopiesWhatItChecked(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the fixtures are amd64 binaries")
	}
	src := filepath.Join(t.TempDir(), "worker")
	b, _ := os.ReadFile(staticWorker(t))
	os.WriteFile(src, b, 0o755)
	script := filepath.Join(t.TempDir(), "script")
	os.WriteFile(script, []byte("#!/bin/sh\necho swapped\n"), 0o755)
	afterCheck = func() {
		if err := os.Rename(script, src); err != nil {
			t.Error(err)
		}
	}
	defer func() { afterCheck = func() {} }()
	dir := t.TempDir()
	if err := Copy(dir, map[string]string{"linux/amd64": src}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, platform.WorkerBinary("linux/amd64")))
	if !bytes.Equal(got, b) {
		t.Errorf("copied %d bytes (%.20q), not the %d-byte binary it checked", len(got), got, len(b))
	}
}
