package buildkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/build/attesttest"
	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// attestedRequest is a one-file image on the devenv's distroless
// stand-in, with attestations; broken makes its build fail.
func attestedRequest(t *testing.T, env map[string]string, variant string, out build.Output, broken bool, attest ...string) *build.Request {
	t.Helper()
	reg := env["WGR_REGISTRY"]
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte(fmt.Sprintf("%s %d\n", t.Name(), time.Now().UnixNano())), 0o644); err != nil {
		t.Fatal(err)
	}
	image := fmt.Sprintf("%s/wgr-buildkit-test/%s-%d", reg, variant, time.Now().UnixNano())
	df := "FROM " + reg + "/distroless/static-debian12:nonroot\nCOPY hello /hello\n"
	if broken {
		df += "COPY no-such-file /x\n"
	}
	req := &build.Request{
		Variant:    &variants.Variant{Name: variant, Image: image, Platforms: []string{"linux/amd64"}, Tags: []string{image + ":v9.9.9", image + ":latest"}, Compression: "gzip"},
		Dockerfile: []byte(df),
		ContextDir: dir,
		Output:     out,
	}
	for _, s := range attest {
		a, err := variants.ParseAttestation(s)
		if err != nil {
			t.Fatal(err)
		}
		req.Attest = append(req.Attest, a)
	}
	return req
}

func openBuilder(t *testing.T, env map[string]string) (*Builder, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	b, err := New(ctx, Options{Addr: env["BUILDKIT_HOST"], Progress: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, ctx
}

// statement is the part of an in-toto statement the test reads.
type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate json.RawMessage `json:"predicate"`
}

// provenanceOf finds, in an index, the image for linux/amd64 and the
// attestation manifest that refers to it (platform unknown/unknown), as
// `docker buildx imagetools inspect --format '{{json .Provenance}}'` does,
// and reads its provenance statement.
func provenanceOf(t *testing.T, idx v1.ImageIndex) (v1.Hash, statement) {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var image v1.Hash
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == "amd64" {
			image = m.Digest
		}
	}
	as, err := attesttest.Read(idx)
	if err != nil {
		t.Fatal(err)
	}
	if image.Hex == "" || len(as) != 1 {
		t.Fatalf("index lacks the image or has not one attestation manifest: %+v", im.Manifests)
	}
	a := as[0]
	if a.Platform == nil || a.Platform.OS != "unknown" || a.Platform.Architecture != "unknown" {
		t.Errorf("attestation manifest with platform %v, want unknown/unknown", a.Platform)
	}
	if a.Subject != image.String() {
		t.Errorf("attestation manifest refers to %s, the image is %s", a.Subject, image)
	}
	return image, statementOf(t, a, "https://slsa.dev/provenance/")
}

// statementOf decodes a's statement whose predicate type starts with
// prefix, an in-toto JSON layer.
func statementOf(t *testing.T, a attesttest.Attestation, prefix string) statement {
	t.Helper()
	l, ok := a.Find(prefix)
	if !ok {
		t.Fatalf("attestation manifest has no %s layer", prefix)
	}
	if l.MediaType != "application/vnd.in-toto+json" {
		t.Errorf("%s layer media type %s", prefix, l.MediaType)
	}
	var st statement
	if err := json.Unmarshal(l.Body, &st); err != nil {
		t.Fatalf("%s layer is not an in-toto statement: %v", prefix, err)
	}
	if !strings.HasPrefix(st.PredicateType, prefix) {
		t.Errorf("predicateType %q, want %s", st.PredicateType, prefix)
	}
	return st
}

func checkProvenance(t *testing.T, image v1.Hash, st statement) {
	t.Helper()
	if st.PredicateType != "https://slsa.dev/provenance/v1" && st.PredicateType != "https://slsa.dev/provenance/v0.2" {
		t.Errorf("predicateType %q", st.PredicateType)
	}
	if !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/") {
		t.Errorf("_type %q", st.Type)
	}
	if len(st.Subject) == 0 || st.Subject[0].Digest["sha256"] != image.Hex {
		t.Errorf("subject %+v, want the image manifest %s", st.Subject, image)
	}
	// mode=max records the build's configuration (its LLB), min does not.
	if !strings.Contains(string(st.Predicate), `"buildConfig"`) {
		t.Errorf("provenance lacks buildConfig: not mode=max")
	}
}

// A release build with provenance (mode=max) through a real buildkitd,
// published atomically: the digest is an index holding the image and its
// attestation manifest, every tag (one in another repository too) points
// at that index, the reported
// platforms are the image's (not unknown/unknown), and the provenance is
// an in-toto statement about the image manifest.
func TestRealBuildProvenanceAtomic(t *testing.T) {
	env := devenv(t)
	b, ctx := openBuilder(t, env)
	req := attestedRequest(t, env, "prov", build.PushByDigest(), false, "type=provenance,mode=max")
	// A tag in another repository gets a copy of the index, attestations and all.
	req.Variant.Tags = append(req.Variant.Tags, req.Variant.Image+"-copy:v9.9.9")
	results, err := build.Run(ctx, b, []*build.Request{req}, build.Options{Tagger: &registry.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	res := results[0]
	if !res.Tagged || strings.Join(res.Platforms, ",") != "linux/amd64" {
		t.Errorf("tagged %v, platforms %v", res.Tagged, res.Platforms)
	}
	for _, tag := range req.Variant.Tags {
		desc, err := remote.Get(mustRef(t, tag))
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest.String() != res.Digest || !desc.MediaType.IsIndex() {
			t.Errorf("%s points at %s (%s), want the index %s", tag, desc.Digest, desc.MediaType, res.Digest)
		}
	}
	repo, _ := name.NewRepository(req.Variant.Image)
	idx, err := remote.Index(repo.Digest(res.Digest))
	if err != nil {
		t.Fatal(err)
	}
	image, st := provenanceOf(t, idx)
	checkProvenance(t, image, st)
}

// With attestations, a matrix where one variant fails moves no tag of the
// variant that built.
func TestRealBuildAttestedFailureMovesNoTag(t *testing.T) {
	env := devenv(t)
	b, ctx := openBuilder(t, env)
	good := attestedRequest(t, env, "good", build.PushByDigest(), false, "type=provenance,mode=max")
	bad := attestedRequest(t, env, "bad", build.PushByDigest(), true, "type=provenance,mode=max")
	results, err := build.Run(ctx, b, []*build.Request{good, bad}, build.Options{Tagger: &registry.Client{}})
	var me *build.MatrixError
	if !errorsAs(err, &me) || len(me.Failed) != 1 || me.Failed[0].Variant != "bad" {
		t.Fatalf("err = %v", err)
	}
	if len(results) != 1 || results[0].Tagged {
		t.Fatalf("results %+v", results)
	}
	for _, tag := range append(good.Variant.Tags, bad.Variant.Tags...) {
		if _, err := remote.Head(mustRef(t, tag)); err == nil {
			t.Errorf("tag %s exists after a failed matrix", tag)
		}
	}
}

// An OCI layout output with attestations holds the index, with the image
// and its provenance, under each of the variant's tags.
func TestRealBuildProvenanceOCILayout(t *testing.T) {
	env := devenv(t)
	b, ctx := openBuilder(t, env)
	dir := filepath.Join(t.TempDir(), "oci")
	out, err := build.OCILayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	req := attestedRequest(t, env, "layout", out, false, "type=provenance,mode=max")
	if _, err := build.Run(ctx, b, []*build.Request{req}, build.Options{}); err != nil {
		t.Fatal(err)
	}
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := root.IndexManifest()
	if err != nil || len(rm.Manifests) != len(req.Variant.Tags) {
		t.Fatalf("layout index.json: %+v %v", rm, err)
	}
	for _, m := range rm.Manifests { // one entry per tag, each the same index
		if !m.MediaType.IsIndex() || m.Digest != rm.Manifests[0].Digest {
			t.Errorf("layout entry %s %s (%v), want the index %s", m.MediaType, m.Digest, m.Annotations, rm.Manifests[0].Digest)
		}
	}
	idx, err := root.ImageIndex(rm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	image, st := provenanceOf(t, idx)
	checkProvenance(t, image, st)
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sbomScanner is BuildKit's default SBOM generator, which the devenv
// serves from its registry (docker.io is mirrored there) once it has
// published its offline stand-in (tools/sbomscanner) under that name.
const sbomScanner = "docker/buildkit-syft-scanner:stable-1"

// An SBOM attestation through a real buildkitd with BuildKit's default
// generator: an SPDX in-toto statement about the image manifest, in the
// attestation manifest beside the provenance (what `docker buildx
// imagetools inspect --format '{{json .SBOM}}'` reads).
func TestRealBuildSBOM(t *testing.T) {
	env := devenv(t)
	if _, err := remote.Head(mustRef(t, env["WGR_REGISTRY"]+"/"+sbomScanner)); err != nil {
		t.Skipf("the devenv registry has no SBOM scanner at %s (scripts/devenv up publishes tools/sbomscanner there): %v", sbomScanner, err)
	}
	b, ctx := openBuilder(t, env)
	req := attestedRequest(t, env, "sbom", build.PushByDigest(), false, "type=provenance,mode=max", "type=sbom")
	results, err := build.Run(ctx, b, []*build.Request{req}, build.Options{Tagger: &registry.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(req.Variant.Image)
	idx, err := remote.Index(repo.Digest(results[0].Digest))
	if err != nil {
		t.Fatal(err)
	}
	image, st := provenanceOf(t, idx)
	checkProvenance(t, image, st)
	as, err := attesttest.Read(idx)
	if err != nil {
		t.Fatal(err)
	}
	sbom := statementOf(t, as[0], "https://spdx.dev/Document")
	if len(sbom.Subject) == 0 || sbom.Subject[0].Digest["sha256"] != image.Hex {
		t.Errorf("SBOM subject %+v, want the image manifest %s", sbom.Subject, image)
	}
}
