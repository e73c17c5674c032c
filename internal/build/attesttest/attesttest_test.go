package attesttest

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// An index laid out as BuildKit pushes one: an image and an attestation
// manifest about it with a provenance and an SPDX statement.
func TestRead(t *testing.T) {
	image, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	imgDigest, _ := image.Digest()
	prov := static.NewLayer([]byte(`{"predicateType":"https://slsa.dev/provenance/v1","secret":"no"}`), "application/vnd.in-toto+json")
	sbom := static.NewLayer([]byte(`{"predicateType":"https://spdx.dev/Document"}`), "application/vnd.in-toto+json")
	att, err := mutate.Append(empty.Image,
		mutate.Addendum{Layer: prov, Annotations: map[string]string{"in-toto.io/predicate-type": "https://slsa.dev/provenance/v1"}},
		mutate.Addendum{Layer: sbom, Annotations: map[string]string{"in-toto.io/predicate-type": "https://spdx.dev/Document"}})
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: image, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": imgDigest.String()}}})
	as, err := Read(idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].Subject != imgDigest.String() || as[0].Platform.OS != "unknown" || len(as[0].Layers) != 2 {
		t.Fatalf("Read = %+v", as)
	}
	st, ok := as[0].Find("https://slsa.dev/provenance/")
	if !ok || st.MediaType != "application/vnd.in-toto+json" || string(st.Body) != `{"predicateType":"https://slsa.dev/provenance/v1","secret":"no"}` {
		t.Errorf("Find provenance = %+v, %v", st, ok)
	}
	if _, ok := as[0].Find("https://example.com/none"); ok {
		t.Error("Find found a predicate type that is not there")
	}
	if where := as[0].Contains(`"secret":"no"`); where == "" || where[:6] != "layer " {
		t.Errorf("Contains = %q", where)
	}
	if where := as[0].Contains("not anywhere"); where != "" {
		t.Errorf("Contains found %q", where)
	}
}
