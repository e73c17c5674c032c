package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// unpack writes an image's flattened file system into dir, owners and
// modes kept (the tests run as root): its layers in order, each
// decompressed by gzip(1) (Go's inflate under -race takes minutes for an
// image), whiteouts applied as the OCI image spec says.
func unpack(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		if err := unpackLayer(l, dir); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
}

// unpackLayer applies one layer to dir: an opaque whiteout empties its
// folder of what lower layers put there, a .wh.NAME removes NAME, anything
// else replaces what was at its path.
func unpackLayer(l v1.Layer, dir string) error {
	r, wait, err := uncompressed(l)
	if err != nil {
		return err
	}
	mine := map[string]bool{} // what this layer wrote, which an opaque whiteout keeps
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			wait()
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		base := filepath.Base(p)
		switch {
		case base == ".wh..wh..opq":
			entries, _ := os.ReadDir(filepath.Dir(p))
			for _, e := range entries {
				if c := filepath.Join(filepath.Dir(p), e.Name()); !mine[c] {
					os.RemoveAll(c)
				}
			}
		case strings.HasPrefix(base, ".wh."):
			os.RemoveAll(filepath.Join(filepath.Dir(p), strings.TrimPrefix(base, ".wh.")))
		default:
			mine[p] = true
			writeEntry(tr, h, p, dir)
		}
	}
	return wait()
}

// uncompressed gives a layer's tar stream, through gzip(1) for a gzip
// layer, and a function that ends the stream and says how it went.
func uncompressed(l v1.Layer) (io.Reader, func() error, error) {
	mt, err := l.MediaType()
	if err != nil {
		return nil, nil, err
	}
	if !strings.HasSuffix(string(mt), "gzip") {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, nil, err
		}
		return rc, rc.Close, nil
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, nil, err
	}
	gz := exec.Command("gzip", "-dc")
	gz.Stdin = rc
	out, err := gz.StdoutPipe()
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	if err := gz.Start(); err != nil {
		rc.Close()
		return nil, nil, err
	}
	return out, func() error {
		io.Copy(io.Discard, out)
		err := gz.Wait()
		rc.Close()
		return err
	}, nil
}

// writeEntry writes one tar entry at p, replacing what was there unless
// both are folders.
func writeEntry(tr *tar.Reader, h *tar.Header, p, dir string) {
	if st, err := os.Lstat(p); err == nil && !(st.IsDir() && h.Typeflag == tar.TypeDir) {
		os.RemoveAll(p)
	}
	switch h.Typeflag {
	case tar.TypeDir:
		os.MkdirAll(p, os.FileMode(h.Mode).Perm())
	case tar.TypeReg:
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode).Perm())
		if err != nil {
			return
		}
		io.Copy(f, tr)
		f.Close()
	case tar.TypeSymlink:
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.Symlink(h.Linkname, p)
	case tar.TypeLink:
		os.Link(filepath.Join(dir, filepath.Clean("/"+h.Linkname)), p)
	default:
		return
	}
	os.Lchown(p, h.Uid, h.Gid)
	if h.Typeflag != tar.TypeSymlink {
		os.Chmod(p, os.FileMode(h.Mode)&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)|modeBits(h.Mode))
	}
}

func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&04000 != 0 {
		out |= os.ModeSetuid
	}
	if m&02000 != 0 {
		out |= os.ModeSetgid
	}
	if m&01000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// dockerCaps are Docker's default capabilities: what a RunPod container has.
var dockerCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// kanikoCaps add what Kaniko's file system work needs.
var kanikoCaps = append(append([]string{}, dockerCaps...), "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN", "CAP_LINUX_IMMUTABLE")

type container struct {
	rootfs string
	args   []string
	env    []string
	caps   []string
	cwd    string
	// uid and gid the process runs as (root when zero).
	uid, gid int
}

// run starts the container with runc: its own pid, mount, ipc and uts
// namespaces, the host's network (the fakes listen on loopback). It
// returns the output and exit code, killing it after timeout.
func (c container) run(t *testing.T, timeout time.Duration) (string, int) {
	t.Helper()
	return c.runWithMounts(t, timeout, nil)
}

// runWithMounts is run with host folders bind-mounted (destination: source).
func (c container) runWithMounts(t *testing.T, timeout time.Duration, binds map[string]string) (string, int) {
	t.Helper()
	bundle := filepath.Dir(c.rootfs)
	nofile := uint64(4096)
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Max < nofile {
		nofile = rl.Max
	}
	if c.cwd == "" {
		c.cwd = "/"
	}
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]any{"uid": c.uid, "gid": c.gid},
			"args": c.args, "env": c.env, "cwd": c.cwd,
			"capabilities": map[string]any{"bounding": c.caps, "effective": c.caps, "permitted": c.caps},
			"rlimits":      []map[string]any{{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}},
		},
		"root":     map[string]any{"path": "rootfs", "readonly": false},
		"hostname": "e2e",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}},
			{"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": []string{"rbind", "ro"}},
		},
		"linux": map[string]any{
			"namespaces":    []map[string]any{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}},
			"maskedPaths":   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"},
			"readonlyPaths": []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	for dst, src := range binds {
		os.MkdirAll(filepath.Join(c.rootfs, dst), 0o755)
		spec["mounts"] = append(spec["mounts"].([]map[string]any), map[string]any{"destination": dst, "type": "bind", "source": src, "options": []string{"rbind", "rw"}})
	}
	b, _ := json.MarshalIndent(spec, "", "  ")
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("wgr-e2e-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", "run", "--bundle", bundle, id)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	exec.Command("runc", "delete", "--force", id).Run()
	if ctx.Err() != nil {
		t.Fatalf("container did not finish within %v:\n%s", timeout, tail(out.String(), 60))
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("runc: %v\n%s", err, out.String())
	}
	return out.String(), code
}

// newBundle makes a bundle folder with the image unpacked as its rootfs.
func newBundle(t *testing.T, img v1.Image) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wgr-bundle-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rootfs := filepath.Join(dir, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	unpack(t, img, rootfs)
	return rootfs
}

func imageEnv(t *testing.T, img v1.Image) []string {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.Config.Env
}

func hasRunc() bool {
	_, err := exec.LookPath("runc")
	return err == nil && os.Getuid() == 0
}
