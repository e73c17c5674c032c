package build

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// A backend that cannot attest (Kaniko) refuses a request for attestations
// before anything is built: a release never goes out without them.
func TestAttestationsRefusedBeforeAnyBuild(t *testing.T) {
	prov, err := variants.ParseAttestation("type=provenance,mode=max")
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBuilder{caps: Capabilities{Name: "Kaniko", MaxJobs: 1}}
	reqs := requests("example.invalid/x", "a", "b")
	for _, r := range reqs {
		r.Output = layout(t)
	}
	reqs[1].Attest = []variants.Attestation{prov}
	_, err = Run(context.Background(), fb, reqs, Options{})
	if err == nil || !strings.Contains(err.Error(), "variant b: Kaniko cannot attach attestations (provenance)") {
		t.Fatalf("err = %v", err)
	}
	if n := fb.calls.Load(); n != 0 {
		t.Errorf("%d builds ran before the refusal", n)
	}
	fb.caps.Attestations = true
	if _, err := Run(context.Background(), fb, reqs, Options{}); err != nil {
		t.Errorf("a backend that attests: %v", err)
	}
}

// A backend's own check (Capabilities.Check) runs on every request before
// any build.
func TestBackendCheckRunsBeforeAnyBuild(t *testing.T) {
	fb := &fakeBuilder{caps: Capabilities{Name: "Fake", Check: func(r *Request) error {
		if r.Variant.Compression == variants.CompressionUncompressed {
			return errors.New("no uncompressed layers here")
		}
		return nil
	}}}
	reqs := requests("example.invalid/x", "a", "b")
	for _, r := range reqs {
		r.Output = layout(t)
	}
	reqs[1].Variant.Compression = variants.CompressionUncompressed
	_, err := Run(context.Background(), fb, reqs, Options{})
	if err == nil || err.Error() != "variant b: no uncompressed layers here" {
		t.Fatalf("err = %v", err)
	}
	if n := fb.calls.Load(); n != 0 {
		t.Errorf("%d builds ran before the refusal", n)
	}
}
