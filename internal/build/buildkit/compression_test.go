package buildkit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

func level(n int) *int { return &n }

// Layer compression reaches the image exporter as BuildKit's attributes
// (what `docker buildx build --output type=image,compression=zstd,...`
// sends); zstd layers need OCI media types.
func TestCompressionExportAttrs(t *testing.T) {
	oci, err := build.OCILayout("/out/oci/cpu")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v    variants.Variant
		out  build.Output
		want map[string]string
	}{
		{variants.Variant{Compression: "gzip"}, build.PushByDigest(), map[string]string{"compression": "gzip"}},
		{variants.Variant{Compression: "zstd", CompressionLevel: level(19), ForceCompression: true}, build.PushByDigest(),
			map[string]string{"compression": "zstd", "compression-level": "19", "force-compression": "true", "oci-mediatypes": "true"}},
		{variants.Variant{Compression: "uncompressed"}, build.PushTags(), map[string]string{"compression": "uncompressed"}},
		{variants.Variant{Compression: "zstd", ForceCompression: true}, oci, map[string]string{"compression": "zstd", "force-compression": "true", "oci-mediatypes": "true"}},
	} {
		v := tc.v
		v.Name, v.Image, v.Tags = "cpu", "docker.io/runpod/w", []string{"docker.io/runpod/w:dev-cpu"}
		got := exportEntry(&build.Request{Variant: &v, Output: tc.out}).Attrs
		for k, want := range tc.want {
			if got[k] != want {
				t.Errorf("%s to %v: %s = %q, want %q (all: %v)", tc.v.Compression, tc.out, k, got[k], want, got)
			}
		}
		for _, k := range []string{"compression-level", "force-compression"} {
			if _, ok := tc.want[k]; !ok && got[k] != "" {
				t.Errorf("%s to %v: %s = %q, want it unset", tc.v.Compression, tc.out, k, got[k])
			}
		}
	}
}

// Attestations reach the Dockerfile frontend as attest:TYPE attributes in
// bake's form, what buildx sends for --attest.
func TestAttestFrontendAttrs(t *testing.T) {
	var as []variants.Attestation
	for _, s := range []string{"type=provenance,mode=max", "type=sbom,generator=127.0.0.1:5000/docker/buildkit-syft-scanner:stable-1"} {
		a, err := variants.ParseAttestation(s)
		if err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
	}
	v := &variants.Variant{Name: "cpu", Image: "docker.io/runpod/w", Platforms: []string{"linux/amd64"}}
	opt := solveOpt(&build.Request{Variant: v, Attest: as}, nil, nil)
	want := map[string]string{
		"attest:provenance": "type=provenance,mode=max",
		"attest:sbom":       "type=sbom,generator=127.0.0.1:5000/docker/buildkit-syft-scanner:stable-1",
	}
	for k, w := range want {
		if opt.FrontendAttrs[k] != w {
			t.Errorf("%s = %q, want %q", k, opt.FrontendAttrs[k], w)
		}
	}
	opt = solveOpt(&build.Request{Variant: v}, nil, nil)
	for k := range opt.FrontendAttrs {
		if strings.HasPrefix(k, "attest:") {
			t.Errorf("no attestations asked, but %s = %q", k, opt.FrontendAttrs[k])
		}
	}
	if !(Options{}).Capabilities().Attestations {
		t.Error("BuildKit does not say it attests")
	}
}

// devenv reads the environment file of scripts/devenv (WGR_DEVENV); the
// test skips without it (CI always sets it).
func devenv(t *testing.T) map[string]string {
	t.Helper()
	p := os.Getenv("WGR_DEVENV")
	if p == "" {
		t.Skip("needs the local build environment: scripts/devenv up, then WGR_DEVENV=$(scripts/devenv path)")
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "), "="); ok {
			out[k] = strings.Trim(v, "'")
		}
	}
	return out
}

// realBuild builds a one-file image on the devenv's distroless stand-in
// (one gzip layer of Docker media type) through its buildkitd, pushed by
// digest to a fresh repository of its registry.
func realBuild(t *testing.T, v *variants.Variant, attest ...string) (*build.Result, name.Repository) {
	t.Helper()
	env := devenv(t)
	reg := env["WGR_REGISTRY"]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b, err := New(ctx, Options{Addr: env["BUILDKIT_HOST"], Progress: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte(fmt.Sprintf("hello %s %d\n", t.Name(), time.Now().UnixNano())), 0o644); err != nil {
		t.Fatal(err)
	}
	v.Image = fmt.Sprintf("%s/wgr-buildkit-test/%s-%d", reg, strings.ToLower(v.Name), time.Now().UnixNano())
	v.Platforms = []string{"linux/amd64"}
	v.Tags = []string{v.Image + ":dev"}
	req := &build.Request{
		Variant:    v,
		Dockerfile: []byte("FROM " + reg + "/distroless/static-debian12:nonroot\nCOPY hello /hello\n"),
		ContextDir: dir,
		Output:     build.PushByDigest(),
	}
	for _, s := range attest {
		a, err := variants.ParseAttestation(s)
		if err != nil {
			t.Fatal(err)
		}
		req.Attest = append(req.Attest, a)
	}
	res, err := b.Build(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(v.Image)
	if err != nil {
		t.Fatal(err)
	}
	return res, repo
}

// platformImage reads the pushed image for linux/amd64: the manifest
// itself, or its entry in an index.
func platformImage(t *testing.T, repo name.Repository, digest string) v1.Image {
	t.Helper()
	desc, err := remote.Get(repo.Digest(digest))
	if err != nil {
		t.Fatal(err)
	}
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == "amd64" {
			img, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no linux/amd64 image in %s@%s", repo, digest)
	return nil
}

func layerTypes(t *testing.T, img v1.Image) []types.MediaType {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []types.MediaType
	for _, l := range m.Layers {
		out = append(out, l.MediaType)
	}
	return out
}

// zstd with force_compression re-compresses every layer, the base
// image's gzip layer too; without force the base layer is reused as it
// is; the default stays gzip.
func TestRealBuildCompression(t *testing.T) {
	zstd, gzip := types.MediaType("application/vnd.oci.image.layer.v1.tar+zstd"), types.OCILayer
	for _, tc := range []struct {
		name string
		v    variants.Variant
		want []types.MediaType
	}{
		{"zstd-force", variants.Variant{Compression: "zstd", ForceCompression: true}, []types.MediaType{zstd, zstd}},
		{"zstd", variants.Variant{Compression: "zstd"}, []types.MediaType{gzip, zstd}},
		{"default", variants.Variant{Compression: "gzip"}, []types.MediaType{gzip, gzip}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			v.Name = tc.name
			res, repo := realBuild(t, &v)
			if got := layerTypes(t, platformImage(t, repo, res.Digest)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("layers %v, want %v", got, tc.want)
			}
		})
	}
}
