package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/build/attesttest"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// platformDigest is the digest of ref's linux/amd64 image manifest (the
// index's entry, not the index).
func platformDigest(t *testing.T, ref string) string {
	t.Helper()
	d, err := image(t, ref).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// buildx is the buildx binary scripts/test installs into the devenv's
// cache (as it does actionlint).
func buildx(t *testing.T) string {
	t.Helper()
	p := filepath.Join(devenv["WGR_CACHE"], "bin", "buildx")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no buildx at %s (scripts/test installs it; CI always has it): %v", p, err)
	}
	return p
}

// imagetools runs `buildx imagetools inspect REF --format FORMAT` and
// decodes its JSON.
func imagetools(t *testing.T, ref, format string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildx(t), "imagetools", "inspect", ref, "--format", format)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "BUILDX_CONFIG="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("buildx imagetools inspect %s --format %s: %v\n%s", ref, format, err, exitStderr(err))
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("%s of %s is not JSON: %v\n%.400s", format, ref, err, out)
	}
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// checkAttestations reads a release image's provenance and SBOM the way
// README tells users to (buildx imagetools inspect), and checks what they
// say: SLSA provenance in mode=max of this build, an SPDX SBOM listing the
// image's packages (dpkg for the worker images, Go modules for the scaler).
func checkAttestations(t *testing.T, ref, variant string) {
	t.Helper()
	checkAttestationLayout(t, ref)
	var prov struct {
		SLSA struct {
			BuildDefinition struct {
				BuildType          string         `json:"buildType"`
				ExternalParameters map[string]any `json:"externalParameters"`
				InternalParameters map[string]any `json:"internalParameters"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Metadata map[string]any `json:"metadata"`
			} `json:"runDetails"`
		} `json:"SLSA"`
	}
	imagetools(t, ref, "{{json .Provenance}}", &prov)
	bd := prov.SLSA.BuildDefinition
	if !strings.Contains(bd.BuildType, "buildkit") || bd.ExternalParameters["request"] == nil {
		t.Errorf("%s: provenance is not BuildKit's SLSA v1: %+v", variant, bd)
	}
	if bd.InternalParameters["buildConfig"] == nil {
		t.Errorf("%s: provenance lacks buildConfig: not mode=max", variant)
	}
	var sbom struct {
		SPDX struct {
			SPDXVersion string `json:"spdxVersion"`
			Packages    []struct {
				Name         string `json:"name"`
				ExternalRefs []struct {
					Locator string `json:"referenceLocator"`
				} `json:"externalRefs"`
			} `json:"packages"`
		} `json:"SPDX"`
	}
	imagetools(t, ref, "{{json .SBOM}}", &sbom)
	want := map[string]string{"cpu": "pkg:deb/debian/git@", "scaler": "pkg:golang/github.com/actions/scaleset@"}[variant]
	found := false
	for _, p := range sbom.SPDX.Packages {
		for _, r := range p.ExternalRefs {
			found = found || strings.HasPrefix(r.Locator, want)
		}
	}
	if sbom.SPDX.SPDXVersion != "SPDX-2.3" || !found {
		t.Errorf("%s: SBOM (%s, %d packages) lists no %s…", variant, sbom.SPDX.SPDXVersion, len(sbom.SPDX.Packages), want)
	}
}

// checkAttestationLayout checks the index as the OCI and Docker tooling
// reads it: every image manifest has exactly one attestation manifest
// (platform unknown/unknown) that references it.
func checkAttestationLayout(t *testing.T, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("%s is not an index: %v", ref, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	as, err := attesttest.Read(idx)
	if err != nil {
		t.Fatal(err)
	}
	attested := map[string]int{}
	for _, a := range as {
		if a.Platform == nil || a.Platform.OS != "unknown" {
			t.Errorf("%s: attestation manifest %s has platform %v", ref, a.Digest, a.Platform)
		}
		attested[a.Subject]++
	}
	images := 0
	for _, d := range m.Manifests {
		if attesttest.IsAttestation(d) {
			continue
		}
		images++
		if attested[d.Digest.String()] != 1 {
			t.Errorf("%s: image %s has %d attestation manifests, want 1", ref, d.Digest, attested[d.Digest.String()])
		}
	}
	if images == 0 {
		t.Errorf("%s: no image in the index", ref)
	}
}
