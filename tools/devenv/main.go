// Command devenv is the Go half of scripts/devenv: it publishes offline base
// images to the local registry, makes the fake runner tarball and serves the
// runner mirror on loopback. It is a development tool, not part of the
// product.
//
//	devenv push-tar --tar ROOTFS.tar --ref 127.0.0.1:5000/library/ubuntu:24.04 [--ref ...] [--env K=V ...]
//	devenv fake-runner --dir MIRROR --version 2.338.0        (prints the tarball's sha256)
//	devenv serve --dir MIRROR --addr 127.0.0.1:8081
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: devenv push-tar|fake-runner|serve [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "push-tar":
		err = pushTar(os.Args[2:])
	case "fake-runner":
		err = fakeRunner(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devenv:", err)
		os.Exit(1)
	}
}

// pushTar publishes a root file system tarball as a one-layer linux/amd64
// image under every --ref.
func pushTar(args []string) error {
	fs := flag.NewFlagSet("push-tar", flag.ExitOnError)
	tarPath := fs.String("tar", "", "uncompressed tar of the root file system")
	var refs, envs multi
	fs.Var(&refs, "ref", "reference to push to (repeatable)")
	fs.Var(&envs, "env", "K=V for the image config (repeatable)")
	entry := fs.String("entrypoint", "", "entrypoint (one path)")
	fs.Parse(args)
	if *tarPath == "" || len(refs) == 0 {
		return errors.New("push-tar needs --tar and --ref")
	}
	layer, err := tarball.LayerFromFile(*tarPath, tarball.WithCompressedCaching)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, envs...)
	if *entry != "" {
		cf.Config.Entrypoint = []string{*entry}
	}
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	for _, r := range refs {
		ref, err := name.ParseReference(r)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img); err != nil {
			return fmt.Errorf("push %s: %w", r, err)
		}
		d, _ := img.Digest()
		fmt.Printf("pushed %s@%s\n", r, d)
	}
	return nil
}

// The fake runner behaves like actions/runner for what an image build and
// the worker need: config.sh, run.sh, bin/installdependencies.sh and
// bin/Runner.Listener exist and are executable. The real one is 211 MB.
var fakeRunnerFiles = map[string]string{
	"config.sh": `#!/bin/sh
# fake actions/runner config.sh (worker-github_runner tests)
echo "fake config.sh $*"
`,
	"run.sh": `#!/bin/sh
# fake actions/runner run.sh: run.sh hides the listener's exit code, as the real one does
"$(dirname "$0")/bin/Runner.Listener" run "$@" || true
`,
	"bin/installdependencies.sh": `#!/bin/sh
# fake installdependencies.sh: the image installs the libraries itself
echo "fake installdependencies.sh: nothing to install"
`,
	"bin/Runner.Listener": `#!/bin/sh
# fake Runner.Listener
echo "fake Runner.Listener $*"
exit "${FAKE_RUNNER_EXIT:-0}"
`,
	"bin/Runner.Worker": "#!/bin/sh\necho fake Runner.Worker\n",
}

func fakeRunner(args []string) error {
	fs := flag.NewFlagSet("fake-runner", flag.ExitOnError)
	dir := fs.String("dir", "", "mirror folder")
	version := fs.String("version", "", "runner version")
	listener := fs.String("listener", "", "a static binary to ship as bin/Runner.Listener (the Go fake runner); default a shell stand-in")
	fs.Parse(args)
	files := map[string]string{}
	for k, v := range fakeRunnerFiles {
		files[k] = v
	}
	if *listener != "" {
		b, err := os.ReadFile(*listener)
		if err != nil {
			return err
		}
		files["bin/Runner.Listener"] = string(b)
	}
	if *dir == "" || *version == "" {
		return errors.New("fake-runner needs --dir and --version")
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.ModTime = time.Unix(0, 0)
	tw := tar.NewWriter(gz)
	names := []string{"bin/", "bin/Runner.Listener", "bin/Runner.Worker", "bin/installdependencies.sh", "config.sh", "run.sh"}
	for _, n := range names {
		hdr := &tar.Header{Name: "./" + n, ModTime: time.Unix(0, 0), Uid: 1001, Gid: 1001, Format: tar.FormatPAX}
		if strings.HasSuffix(n, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o755, int64(len(files[n]))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, files[n]); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	out := filepath.Join(*dir, "v"+*version)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, arch := range []string{"x64", "arm64"} {
		p := filepath.Join(out, fmt.Sprintf("actions-runner-linux-%s-%s.tar.gz", arch, *version))
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	sum := sha256.Sum256(buf.Bytes())
	fmt.Println(hex.EncodeToString(sum[:]))
	return nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dir := fs.String("dir", "", "folder to serve")
	addr := fs.String("addr", "127.0.0.1:8081", "loopback address")
	fs.Parse(args)
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to listen on %s: loopback only", *addr)
	}
	srv := &http.Server{Addr: *addr, Handler: http.FileServer(http.Dir(*dir)), ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}
