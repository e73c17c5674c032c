// Package workerbin puts the worker binary for each target platform into a
// build context: cross-compiled from this module's cmd/worker, or copied
// from prebuilt files after checking they are static Linux executables for
// the platform.
package workerbin

import (
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

	"golang.org/x/mod/modfile"

	"github.com/runpod-workers/worker-github_runner/internal/platform"
)

// Module is the Go module the worker comes from.
const Module = "github.com/runpod-workers/worker-github_runner"

// FindModuleRoot walks up from dir to the go.mod of this module.
func FindModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if modulePath(filepath.Join(d, "go.mod")) == Module {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("not inside a checkout of %s: run imagegen from the repository, or give prebuilt binaries with --worker-bin PLATFORM=PATH", Module)
		}
		d = parent
	}
}

// maxGoMod bounds how much of a go.mod FindModuleRoot reads.
const maxGoMod = 1 << 20

// modulePath is the module path a go.mod declares, or "" when the file is
// missing, not a regular file, too large or has no module directive.
func modulePath(gomod string) string {
	f, err := OpenRegular(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxGoMod+1))
	if err != nil || len(b) > maxGoMod {
		return ""
	}
	return modfile.ModulePath(b)
}

// Compile cross-compiles cmd/worker for each platform into dir
// (CGO_ENABLED=0, -trimpath, version stamped, symbols stripped).
func Compile(ctx context.Context, moduleRoot, dir string, platforms []string, version string) error {
	return CompileCommand(ctx, moduleRoot, dir, platforms, version, "./cmd/worker", platform.WorkerBinary)
}

// CompileCommand cross-compiles the command pkg (./cmd/scaler) as Compile
// does cmd/worker, into dir/name(platform) for each platform.
func CompileCommand(ctx context.Context, moduleRoot, dir string, platforms []string, version, pkg string, name func(string) string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, plat := range platforms {
		p, ok := platform.Lookup(plat)
		if !ok {
			return fmt.Errorf("compile %s: unsupported platform %.64q; use one of %s", pkg, plat, strings.Join(platform.Names(), ", "))
		}
		out := filepath.Join(dir, name(p.Name))
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
			"-ldflags", "-s -w -X main.version="+version,
			"-o", out, pkg)
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.GOARCH)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("compile %s for %s: %v\n%s", pkg, p.Name, err, stderr.String())
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
		if err := copyChecked(filepath.Join(dir, platform.WorkerBinary(p)), src, p); err != nil {
			return err
		}
	}
	return nil
}

func copyChecked(dst, src, plat string) error {
	in, err := OpenRegular(src)
	if err != nil {
		return fmt.Errorf("worker binary %s: %w", src, err)
	}
	defer in.Close()
	if err := checkFile(in, src, plat); err != nil {
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

// Check verifies that path is a static ELF executable for platform.
func Check(path, plat string) error {
	f, err := OpenRegular(path)
	if err != nil {
		return fmt.Errorf("worker binary %s: %w", path, err)
	}
	defer f.Close()
	return checkFile(f, path, plat)
}

// checkFile is Check on an open regular file.
func checkFile(f *os.File, path, plat string) error {
	ef, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("worker binary %s: not an ELF executable: %w", path, err)
	}
	return CheckELF(ef, path, plat)
}

// CheckELF is Check on an opened file: a Linux executable (not a shared
// library or an object file) for the platform's machine, with no
// interpreter and no shared libraries (DT_NEEDED).
func CheckELF(f *elf.File, path, name string) error {
	p, ok := platform.Lookup(name)
	if !ok {
		return fmt.Errorf("worker binary %s: unsupported platform %.64q; use one of %s", path, name, strings.Join(platform.Names(), ", "))
	}
	if f.Machine != p.Machine {
		return fmt.Errorf("worker binary %s is for %s, not %s", path, f.Machine, name)
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
func parseFlag(v string) (plat, path string, err error) {
	plat, path, ok := strings.Cut(v, "=")
	if !ok {
		path = v
	}
	f, err := OpenRegular(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if !ok {
		if plat, err = platformOf(f); err != nil {
			return "", "", err
		}
	}
	return plat, path, checkFile(f, path, plat)
}

// platformOf reads the platform from an ELF header.
func platformOf(r io.ReaderAt) (string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %w", err)
	}
	if p, ok := platform.ByMachine(f.Machine); ok {
		return p.Name, nil
	}
	return "", fmt.Errorf("unsupported machine %s; use PLATFORM=PATH", f.Machine)
}

// ErrDuplicatePlatform: two --worker-bin for one platform.
var ErrDuplicatePlatform = errors.New("two --worker-bin for one platform")

// afterCheck is called by Copy between checking a file and copying it
// (tests swap the file there).
var afterCheck = func() {}
