// Package workerbin puts the worker binary for each target platform into a
// build context: cross-compiled from this module's cmd/worker, or copied
// from prebuilt files after checking they are static Linux executables for
// the platform.
package workerbin

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Module is the Go module the worker comes from.
const Module = "github.com/runpod-workers/worker-github_runner"

// FileName is the name the Dockerfile expects for a platform's binary.
func FileName(platform string) string {
	return "worker-" + strings.ReplaceAll(platform, "/", "-")
}

// FindModuleRoot walks up from dir to the go.mod of this module.
func FindModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		f, err := os.Open(filepath.Join(d, "go.mod"))
		if err == nil {
			sc := bufio.NewScanner(f)
			sc.Scan()
			f.Close()
			if strings.TrimSpace(strings.TrimPrefix(sc.Text(), "module")) == Module {
				return d, nil
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("not inside a checkout of %s: run imagegen from the repository, or give prebuilt binaries with --worker-bin PLATFORM=PATH", Module)
		}
		d = parent
	}
}

// Compile cross-compiles cmd/worker for each platform into dir
// (CGO_ENABLED=0, -trimpath, version stamped, symbols stripped).
func Compile(ctx context.Context, moduleRoot, dir string, platforms []string, version string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok {
			return fmt.Errorf("platform %q is not os/arch", p)
		}
		out := filepath.Join(dir, FileName(p))
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
			"-ldflags", "-s -w -X main.version="+version,
			"-o", out, "./cmd/worker")
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("compile worker for %s: %v\n%s", p, err, stderr.String())
		}
		if err := os.Chmod(out, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Copy puts prebuilt binaries (platform -> path) into dir, refusing a file
// that is not a static Linux executable for its platform. It copies from
// the handle it checked, so a file swapped meanwhile is not copied.
func Copy(dir string, bins map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for p, src := range bins {
		if err := copyChecked(filepath.Join(dir, FileName(p)), src, p); err != nil {
			return err
		}
	}
	return nil
}

func copyChecked(dst, src, platform string) error {
	in, err := OpenRegular(src)
	if err != nil {
		return fmt.Errorf("worker binary %s: %w", src, err)
	}
	defer in.Close()
	if err := checkFile(in, src, platform); err != nil {
		return err
	}
	afterCheck()
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Chmod(dst, 0o755)
}

// OpenRegular opens a file for reading only if it is a regular file: a
// FIFO or a device is refused at once instead of blocking or reading
// forever (the open does not wait for a FIFO's writer).
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

var machines = map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}

// Check verifies that path is a static ELF executable for platform.
func Check(path, platform string) error {
	f, err := OpenRegular(path)
	if err != nil {
		return fmt.Errorf("worker binary %s: %w", path, err)
	}
	defer f.Close()
	return checkFile(f, path, platform)
}

// checkFile is Check on an open regular file.
func checkFile(f *os.File, path, platform string) error {
	ef, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("worker binary %s: not an ELF executable: %w", path, err)
	}
	return CheckELF(ef, path, platform)
}

// CheckELF is Check on an opened file: a Linux executable (not a shared
// library or an object file) for the platform's machine, with no
// interpreter and no shared libraries (DT_NEEDED).
func CheckELF(f *elf.File, path, platform string) error {
	want, ok := machines[platform]
	if !ok {
		return fmt.Errorf("worker binary %s: unsupported platform %s", path, platform)
	}
	if f.Machine != want {
		return fmt.Errorf("worker binary %s is for %s, not %s", path, f.Machine, platform)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("worker binary %s is for %s, not Linux", path, f.OSABI)
	}
	if err := checkType(f, path); err != nil {
		return err
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("worker binary %s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("worker binary %s: read its dynamic section: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("worker binary %s needs shared libraries (%s): build it static with CGO_ENABLED=0", path, strings.Join(libs, ", "))
	}
	return nil
}

// checkType accepts an executable, or a static position-independent
// executable (ET_DYN marked PIE); a shared library is ET_DYN without it.
func checkType(f *elf.File, path string) error {
	switch f.Type {
	case elf.ET_EXEC:
		return nil
	case elf.ET_DYN:
		flags, _ := f.DynValue(elf.DT_FLAGS_1)
		if len(flags) > 0 && elf.DynFlag1(flags[0])&elf.DF_1_PIE != 0 {
			return nil
		}
		return fmt.Errorf("worker binary %s is a shared library (ELF type ET_DYN), not an executable", path)
	default:
		return fmt.Errorf("worker binary %s is not an executable (ELF type %s)", path, f.Type)
	}
}

// ParseFlags turns --worker-bin values (PLATFORM=PATH, or PATH for a binary
// whose platform is read from its ELF header) into platform -> path; each
// binary must pass Check. Two values for one platform are an error that
// wraps ErrDuplicatePlatform.
func ParseFlags(values []string) (map[string]string, error) {
	out := map[string]string{}
	given := map[string]string{}
	for _, v := range values {
		p, path, err := parseFlag(v)
		if err != nil {
			return nil, fmt.Errorf("--worker-bin %s: %w", v, err)
		}
		if first, ok := given[p]; ok {
			return nil, fmt.Errorf("%w: --worker-bin %s and --worker-bin %s are both for %s", ErrDuplicatePlatform, first, v, p)
		}
		given[p] = v
		out[p] = path
	}
	return out, nil
}

// parseFlag checks one --worker-bin value and returns its platform and
// path.
func parseFlag(v string) (platform, path string, err error) {
	platform, path, ok := strings.Cut(v, "=")
	if !ok {
		path = v
	}
	f, err := OpenRegular(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if !ok {
		if platform, err = platformOf(f); err != nil {
			return "", "", err
		}
	}
	return platform, path, checkFile(f, path, platform)
}

// platformOf reads the platform from an ELF header.
func platformOf(r io.ReaderAt) (string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %w", err)
	}
	for plat, m := range machines {
		if f.Machine == m {
			return plat, nil
		}
	}
	return "", fmt.Errorf("unsupported machine %s; use PLATFORM=PATH", f.Machine)
}

// ErrDuplicatePlatform: two --worker-bin for one platform.
var ErrDuplicatePlatform = errors.New("two --worker-bin for one platform")

// afterCheck is called by Copy between checking a file and copying it
// (tests swap the file there).
var afterCheck = func() {}
