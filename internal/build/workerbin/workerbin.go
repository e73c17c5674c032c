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
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
// that is not a static Linux executable for its platform.
func Copy(dir string, bins map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for p, src := range bins {
		if err := Check(src, p); err != nil {
			return err
		}
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, FileName(p))
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err != nil {
			in.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			return err
		}
	}
	return nil
}

var machines = map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}

// Check verifies that path is a static ELF executable for platform.
func Check(path, platform string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("worker binary %s: not an ELF executable: %w", path, err)
	}
	defer f.Close()
	return CheckELF(f, path, platform)
}

// CheckELF is Check on an opened file.
func CheckELF(f *elf.File, path, platform string) error {
	want, ok := machines[platform]
	if !ok {
		return fmt.Errorf("worker binary %s: unsupported platform %s", path, platform)
	}
	if f.Machine != want {
		return fmt.Errorf("worker binary %s is for %s, not %s", path, f.Machine, platform)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("worker binary %s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// ParseFlags turns --worker-bin values (PLATFORM=PATH, or PATH for a binary
// whose platform is read from its ELF header) into platform -> path.
func ParseFlags(values []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		p, path, ok := strings.Cut(v, "=")
		if !ok {
			path = v
			f, err := elf.Open(path)
			if err != nil {
				return nil, fmt.Errorf("--worker-bin %s: %w", v, err)
			}
			p = ""
			for plat, m := range machines {
				if f.Machine == m {
					p = plat
				}
			}
			f.Close()
			if p == "" {
				return nil, fmt.Errorf("--worker-bin %s: unsupported machine; use PLATFORM=PATH", v)
			}
		}
		out[p] = path
	}
	return out, nil
}
