package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// writeTar writes a tar holding one file with the given content.
func writeTar(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "./marker", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))})
	io.WriteString(tw, content)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func testRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// Several --tar PLATFORM=PATH publish an index with one image per
// platform, each image's config naming its architecture (what BuildKit
// picks the base of a linux/arm64 build by).
func TestPushTarSeveralPlatformsMakeAnIndex(t *testing.T) {
	reg := testRegistry(t)
	ref := reg + "/library/ubuntu:24.04"
	var out bytes.Buffer
	err := pushTar([]string{"--tar", "linux/amd64=" + writeTar(t, "amd64"), "--tar", "linux/arm64=" + writeTar(t, "arm64"),
		"--ref", ref, "--env", "A=B"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("%s is not an index: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2", len(im.Manifests))
	}
	for i, want := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != want {
			t.Errorf("manifest %d: platform %+v, want linux/%s", i, d.Platform, want)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != want || cf.OS != "linux" || !strings.Contains(strings.Join(cf.Config.Env, " "), "A=B") {
			t.Errorf("manifest %d: config %s/%s env %v", i, cf.OS, cf.Architecture, cf.Config.Env)
		}
	}
	if d, _ := idx.Digest(); !strings.Contains(out.String(), "pushed "+ref+"@"+d.String()) {
		t.Errorf("output %q does not name the index digest %s", out.String(), d)
	}
}

// One --tar (no platform) still publishes a single linux/amd64 image.
func TestPushTarOneTarIsAnAmd64Image(t *testing.T) {
	reg := testRegistry(t)
	ref := reg + "/kaniko-project/executor:v1"
	if err := pushTar([]string{"--tar", writeTar(t, "x"), "--ref", ref, "--entrypoint", "/kaniko/executor"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType.IsIndex() {
		t.Fatalf("one tar gave an index (%s)", desc.MediaType)
	}
	img, _ := desc.Image()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "amd64" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/kaniko/executor" {
		t.Errorf("config: %s %v", cf.Architecture, cf.Config.Entrypoint)
	}
}

func TestPushTarRefusesBadPlatforms(t *testing.T) {
	reg := testRegistry(t)
	tarf := writeTar(t, "x")
	for _, c := range []struct{ tars []string }{
		{[]string{"linux/arm64=" + tarf, "linux/arm64=" + tarf}},
		{[]string{"linux/arm64/v8/x=" + tarf}},
		{[]string{"linux/=" + tarf}},
	} {
		var args []string
		for _, tf := range c.tars {
			args = append(args, "--tar", tf)
		}
		err := pushTar(append(args, "--ref", reg+"/x:y"), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--tar") {
			t.Errorf("%v: err %v, want one naming --tar", c.tars, err)
		}
	}
}

// The x64 and arm64 tarballs each carry their own listener, and the sums
// printed are the files' (the env file's RUNNER_SHA256 for each platform).
func TestFakeRunnerTarballPerArchitecture(t *testing.T) {
	dir := t.TempDir()
	bins := map[string]string{}
	for _, a := range []string{"x64", "arm64"} {
		bins[a] = filepath.Join(t.TempDir(), "listener")
		os.WriteFile(bins[a], []byte("listener for "+a), 0o755)
	}
	var out bytes.Buffer
	if err := fakeRunner([]string{"--dir", dir, "--version", "9.9.9", "--listener", bins["x64"], "--listener-arm64", bins["arm64"]}, &out); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, a := range []struct{ platform, arch string }{{"linux/amd64", "x64"}, {"linux/arm64", "arm64"}} {
		b, err := os.ReadFile(filepath.Join(dir, "v9.9.9", "actions-runner-linux-"+a.arch+"-9.9.9.tar.gz"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(&want, "%s %s\n", a.platform, hex.EncodeToString(sum[:]))
		if got := tarFile(t, b, "./bin/Runner.Listener"); got != "listener for "+a.arch {
			t.Errorf("%s tarball: bin/Runner.Listener is %q", a.arch, got)
		}
	}
	if out.String() != want.String() {
		t.Errorf("printed %q, want %q", out.String(), want.String())
	}
}

// Without --listener-arm64 the arm64 tarball gets the shell stand-in, never
// the x64 listener (which would run natively on an amd64 host inside an
// arm64 image and hide a missing emulation).
func TestFakeRunnerArm64NeverGetsTheX64Listener(t *testing.T) {
	dir := t.TempDir()
	x64 := filepath.Join(t.TempDir(), "listener")
	os.WriteFile(x64, []byte("x64 listener"), 0o755)
	if err := fakeRunner([]string{"--dir", dir, "--version", "9.9.9", "--listener", x64}, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "v9.9.9", "actions-runner-linux-arm64-9.9.9.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tarFile(t, b, "./bin/Runner.Listener"); got != fakeRunnerFiles["bin/Runner.Listener"] {
		t.Errorf("arm64 bin/Runner.Listener is %.40q, want the shell stand-in", got)
	}
}

func tarFile(t *testing.T, tgz []byte, name string) string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the tarball: %v", name, err)
		}
		if h.Name == name {
			b, _ := io.ReadAll(tr)
			return string(b)
		}
	}
}

// The stand-ins are gzipped at gzip's default level, not the library's
// level 1: their layers are then the size a real base image's would be.
func TestRootfsLayerAtDefaultGzipLevel(t *testing.T) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := bytes.Repeat([]byte("Package: libc6\nVersion: 2.36-9+deb12u7\nArchitecture: amd64\n"), 20000)
	for i := range body {
		if i%7 == 0 {
			body[i] = byte('a' + i*31%26) // compressible, but not trivially
		}
	}
	tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	os.WriteFile(p, tb.Bytes(), 0o644)
	size := func(level int) int64 {
		var b bytes.Buffer
		w, _ := gzip.NewWriterLevel(&b, level)
		w.Write(tb.Bytes())
		w.Close()
		return int64(b.Len())
	}
	img, err := rootfsImage(p, v1.Platform{OS: "linux", Architecture: "amd64"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	got, _ := layers[0].Size()
	if fast, def := size(gzip.BestSpeed), size(gzip.DefaultCompression); got >= fast || got > def+64 {
		t.Errorf("layer is %d bytes; gzip level 1 gives %d, the default level %d", got, fast, def)
	}
}
