package main

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
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/build/attesttest"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestBuildKitRunsTheScanner publishes the scanner as an image, builds a
// Dockerfile through the local buildkitd with attest:sbom=generator=<it>,
// and reads the SBOM attestation back from the registry.
func TestBuildKitRunsTheScanner(t *testing.T) {
	envFile := os.Getenv("WGR_DEVENV")
	if envFile == "" {
		t.Skip("needs the local build environment: scripts/devenv up, then WGR_DEVENV=$(scripts/devenv path)")
	}
	env := readDevenv(t, envFile)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "context", "probe")
	// -buildvcs=false: the probe's main module then has no version stamped
	// from the work tree (moduleLocator accepts one anyway).
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the scanner: %v\n%s", err, out)
	}
	tag := fmt.Sprint(time.Now().UnixNano())
	scanner := env["WGR_REGISTRY"] + "/wgr-test/sbomscanner:" + tag
	pushScannerImage(t, bin, scanner)

	// The image under test: the stand-in ubuntu:24.04 (Debian's dpkg status)
	// plus a Go binary (the scanner itself, as a probe), copied from a stage
	// that asks to be scanned too (BuildKit's extras).
	os.WriteFile(filepath.Join(dir, "context", "Dockerfile"), []byte(
		"FROM ubuntu:24.04 AS build\nARG BUILDKIT_SBOM_SCAN_STAGE=true\nCOPY probe /probe\n"+
			"FROM ubuntu:24.04\nCOPY --from=build /probe /usr/local/bin/probe\n"), 0o644)
	target := env["WGR_REGISTRY"] + "/wgr-test/sbom-probe:" + tag
	cmd := exec.CommandContext(ctx, filepath.Join(env["WGR_CACHE"], "bin", "buildctl"), "--addr", env["BUILDKIT_HOST"],
		"build", "--frontend", "dockerfile.v0", "--progress", "plain",
		"--local", "context="+filepath.Join(dir, "context"), "--local", "dockerfile="+filepath.Join(dir, "context"),
		"--opt", "attest:sbom=generator="+scanner,
		"--output", "type=image,name="+target+",push=true,registry.insecure=true,oci-mediatypes=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("buildctl build: %v\n%s", err, tail(string(out), 40))
	}
	if !strings.Contains(string(out), "generating sbom using "+scanner) {
		t.Errorf("BuildKit did not run our generator:\n%s", tail(string(out), 40))
	}

	sts, imageDigest := readSBOMAttestation(t, target)
	if len(sts) != 2 || sts[0].Predicate.Name != "sbom" || sts[1].Predicate.Name != "sbom-build" {
		var names []string
		for _, st := range sts {
			names = append(names, st.Predicate.Name)
		}
		t.Fatalf("want the image's SBOM and the build stage's (sbom, sbom-build), got %v", names)
	}
	st := sts[0]
	if st.PredicateType != "https://spdx.dev/Document" || len(st.Subject) == 0 || st.Subject[0].Digest["sha256"] != imageDigest.Hex {
		t.Errorf("statement: predicate %q, subject %+v; want SPDX about the image %s", st.PredicateType, st.Subject, imageDigest)
	}
	doc := st.Predicate
	if doc.SPDXVersion != "SPDX-2.3" || len(doc.CreationInfo.Creators) == 0 || doc.CreationInfo.Creators[0] != "Tool: wgr-sbomscanner" {
		t.Errorf("document header: %+v", doc)
	}
	var deb, gomod bool
	for _, p := range doc.Packages {
		for _, r := range p.ExternalRefs {
			deb = deb || strings.HasPrefix(r.Locator, "pkg:deb/debian/dpkg@") && strings.Contains(r.Locator, "?arch=amd64")
			gomod = gomod || isModuleLocator(r.Locator, "github.com/runpod-workers/worker-github_runner") && p.SourceInfo == "/usr/local/bin/probe"
		}
	}
	if !deb || !gomod {
		t.Errorf("SBOM lists dpkg from the base: %v, the probe's Go module: %v (%d packages)", deb, gomod, len(doc.Packages))
	}
}

// isModuleLocator tells whether purl names the Go module mod, at any
// version or none (a build may stamp one from version control).
func isModuleLocator(purl, mod string) bool {
	rest, ok := strings.CutPrefix(purl, "pkg:golang/"+mod)
	return ok && (rest == "" || rest[0] == '@')
}

func TestIsModuleLocator(t *testing.T) {
	const mod = "github.com/runpod-workers/worker-github_runner"
	for purl, want := range map[string]bool{
		"pkg:golang/" + mod: true,
		"pkg:golang/" + mod + "@v0.0.0-20261127121213-4964e6dfcf75+dirty": true,
		"pkg:golang/" + mod + "@v1.2.0":                                   true,
		"pkg:golang/" + mod + "/tools":                                    false,
		"pkg:golang/" + mod + "-fork@v1.0.0":                              false,
		"pkg:golang/example.com/" + mod:                                   false,
	} {
		if got := isModuleLocator(purl, mod); got != want {
			t.Errorf("isModuleLocator(%q) = %v, want %v", purl, got, want)
		}
	}
}

// pushScannerImage publishes bin as the whole image, entrypoint
// /usr/bin/wgr-sbomscanner, as the package doc describes.
func pushScannerImage(t *testing.T, bin, ref string) {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"usr/", "usr/bin/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "usr/bin/wgr-sbomscanner", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(b))})
	tw.Write(b)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		OS: "linux", Architecture: runtime.GOARCH,
		RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs(t, layer)},
		Config: v1.Config{Entrypoint: []string{"/usr/bin/wgr-sbomscanner"}, WorkingDir: "/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push the scanner image: %v", err)
	}
}

func diffIDs(t *testing.T, l v1.Layer) []v1.Hash {
	d, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return []v1.Hash{d}
}

type sbomStatement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate spdxDocument `json:"predicate"`
}

// readSBOMAttestation finds the attestation manifest of the index at ref
// and decodes its SPDX layers; it returns the statements, in order, and
// the digest of the image manifest they are about.
func readSBOMAttestation(t *testing.T, ref string) ([]sbomStatement, v1.Hash) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	as, err := attesttest.Read(idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) == 0 {
		t.Fatalf("%s: no attestation manifest", ref)
	}
	about, err := v1.NewHash(as[0].Subject)
	if err != nil {
		t.Fatalf("attestation manifest without the image's digest: %q", as[0].Subject)
	}
	var sts []sbomStatement
	for _, l := range as[0].Layers {
		if l.PredicateType != "https://spdx.dev/Document" {
			continue
		}
		if l.MediaType != "application/vnd.in-toto+json" {
			t.Errorf("SPDX layer media type %s", l.MediaType)
		}
		var st sbomStatement
		if err := json.Unmarshal(l.Body, &st); err != nil {
			t.Fatalf("decode the SPDX statement: %v", err)
		}
		sts = append(sts, st)
	}
	return sts, about
}

// readDevenv parses the `export K='V'` lines scripts/devenv writes.
func readDevenv(t *testing.T, p string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("WGR_DEVENV: %v", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "export "), "="); ok && !strings.HasPrefix(l, "#") {
			m[k] = strings.Trim(v, "'")
		}
	}
	for _, k := range []string{"WGR_REGISTRY", "WGR_CACHE", "BUILDKIT_HOST"} {
		if m[k] == "" {
			t.Fatalf("%s does not set %s", p, k)
		}
	}
	return m
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
