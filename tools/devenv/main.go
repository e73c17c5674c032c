// Command devenv is the Go half of scripts/devenv: it publishes offline base
// images to the local registry, makes the fake runner tarball and serves the
// runner mirror on loopback. It is a development tool, not part of the
// product.
//
//	devenv push-tar --tar [PLATFORM=]ROOTFS.tar [--tar ...] --ref 127.0.0.1:5000/library/ubuntu:24.04 [--ref ...] [--env K=V ...]
//	devenv fake-runner --dir MIRROR --version 2.338.0 [--listener BIN] [--listener-arm64 BIN]
//	        (prints "PLATFORM SHA256" for each tarball)
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
	"github.com/google/go-containerregistry/pkg/v1/types"
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
		err = pushTar(os.Args[2:], os.Stdout)
	case "fake-runner":
		err = fakeRunner(os.Args[2:], os.Stdout)
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

// pushTar publishes root file system tarballs under every --ref: one --tar
// gives a single-platform image, several an image index with one image per
// platform (what a multi-platform base image is). A --tar is PLATFORM=PATH,
// or PATH for linux/amd64.
func pushTar(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("push-tar", flag.ExitOnError)
	var tars, refs, envs multi
	fs.Var(&tars, "tar", "[PLATFORM=]uncompressed tar of the root file system (repeatable; default platform linux/amd64)")
	fs.Var(&refs, "ref", "reference to push to (repeatable)")
	fs.Var(&envs, "env", "K=V for the image config (repeatable)")
	entry := fs.String("entrypoint", "", "entrypoint (one path)")
	fs.Parse(args)
	if len(tars) == 0 || len(refs) == 0 {
		return errors.New("push-tar needs --tar and --ref")
	}
	var imgs []platformImage
	for _, t := range tars {
		plat, path, err := splitTar(t)
		if err != nil {
			return err
		}
		for _, pi := range imgs {
			if pi.platform.Equals(plat) {
				return fmt.Errorf("--tar %s: a second tar for platform %s", path, plat)
			}
		}
		img, err := rootfsImage(path, plat, envs, *entry)
		if err != nil {
			return fmt.Errorf("--tar %s: %w", path, err)
		}
		imgs = append(imgs, platformImage{plat, img})
	}
	for _, r := range refs {
		d, err := pushImages(r, imgs)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", r, d)
	}
	return nil
}

type platformImage struct {
	platform v1.Platform
	img      v1.Image
}

// splitTar splits a --tar value into its platform (linux/amd64 when none
// is given) and path.
func splitTar(v string) (v1.Platform, string, error) {
	p, path, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(p, "linux/") {
		return v1.Platform{OS: "linux", Architecture: "amd64"}, v, nil
	}
	parts := strings.Split(p, "/")
	if len(parts) != 2 || parts[1] == "" || path == "" {
		return v1.Platform{}, "", fmt.Errorf("--tar %.100q: want linux/ARCH=PATH or PATH", v)
	}
	return v1.Platform{OS: "linux", Architecture: parts[1]}, path, nil
}

// rootfsImage is a one-layer image of the tarball for the platform,
// gzipped at gzip's default level as Docker Hub's images are (the
// library's default, level 1, makes a larger layer that BuildKit then
// reuses as it is, even with force-compression to gzip: bench/RESULTS.md
// section 7).
func rootfsImage(path string, plat v1.Platform, envs []string, entry string) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(path, tarball.WithCompressedCaching, tarball.WithCompressionLevel(gzip.DefaultCompression))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = plat.OS, plat.Architecture
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, envs...)
	if entry != "" {
		cf.Config.Entrypoint = []string{entry}
	}
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	return mutate.ConfigFile(img, cf)
}

// pushImages pushes one image, or an index of several, to ref and returns
// the digest ref points at.
func pushImages(r string, imgs []platformImage) (v1.Hash, error) {
	ref, err := name.ParseReference(r)
	if err != nil {
		return v1.Hash{}, err
	}
	if len(imgs) == 1 {
		if err := remote.Write(ref, imgs[0].img); err != nil {
			return v1.Hash{}, fmt.Errorf("push %s: %w", r, err)
		}
		return imgs[0].img.Digest()
	}
	var adds []mutate.IndexAddendum
	for _, pi := range imgs {
		p := pi.platform
		adds = append(adds, mutate.IndexAddendum{Add: pi.img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList), adds...)
	if err := remote.WriteIndex(ref, idx); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", r, err)
	}
	return idx.Digest()
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

// fakeRunner writes the fake runner tarball of each architecture into
// MIRROR/vVERSION and prints "PLATFORM SHA256" for each.
func fakeRunner(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fake-runner", flag.ExitOnError)
	dir := fs.String("dir", "", "mirror folder")
	version := fs.String("version", "", "runner version")
	listener := fs.String("listener", "", "a static linux/amd64 binary to ship as bin/Runner.Listener in the x64 tarball (the Go fake runner); default a shell stand-in")
	// Never the x64 listener by default: on an amd64 host it would run
	// natively inside an arm64 image and hide a missing emulation.
	listenerArm64 := fs.String("listener-arm64", "", "a static linux/arm64 binary for the arm64 tarball; default a shell stand-in")
	fs.Parse(args)
	if *dir == "" || *version == "" {
		return errors.New("fake-runner needs --dir and --version")
	}
	out := filepath.Join(*dir, "v"+*version)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, a := range []struct{ platform, arch, listener string }{
		{"linux/amd64", "x64", *listener},
		{"linux/arm64", "arm64", *listenerArm64},
	} {
		tgz, err := fakeRunnerTarball(a.listener)
		if err != nil {
			return err
		}
		p := filepath.Join(out, fmt.Sprintf("actions-runner-linux-%s-%s.tar.gz", a.arch, *version))
		if err := os.WriteFile(p, tgz, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(tgz)
		fmt.Fprintf(stdout, "%s %s\n", a.platform, hex.EncodeToString(sum[:]))
	}
	return nil
}

// fakeRunnerTarball is the gzipped tar of the fake runner, with listener
// (a file; "" for the shell stand-in) as bin/Runner.Listener.
func fakeRunnerTarball(listener string) ([]byte, error) {
	files := map[string]string{}
	for k, v := range fakeRunnerFiles {
		files[k] = v
	}
	if listener != "" {
		b, err := os.ReadFile(listener)
		if err != nil {
			return nil, err
		}
		files["bin/Runner.Listener"] = string(b)
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
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, files[n]); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
