// Package attesttest reads the attestations BuildKit pushes beside an image,
// as `docker buildx imagetools inspect` finds them, for the tests that check
// them (BuildKit's own builds, imagegen's, the SBOM scanner's): in an index,
// each attestation manifest (platform unknown/unknown, annotation
// vnd.docker.reference.type=attestation-manifest) refers to one image
// manifest and holds its in-toto statements as layers.
package attesttest

import (
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// MaxStatement caps the bytes read of one statement (BuildKit refuses
// attestations over 80 MiB).
const MaxStatement = 80 << 20

// Attestation is one attestation manifest of an index.
type Attestation struct {
	// Digest is the attestation manifest's; Platform is what the index says of it.
	Digest   v1.Hash
	Platform *v1.Platform
	// Subject is the image manifest it is about
	// (vnd.docker.reference.digest), "" when the annotation is missing.
	Subject string
	// Manifest and Config are the raw attestation manifest and config.
	Manifest, Config []byte
	Layers           []Statement
}

// Statement is one layer of an attestation manifest: an in-toto statement.
type Statement struct {
	Digest        v1.Hash
	MediaType     string
	PredicateType string // the layer's in-toto.io/predicate-type annotation
	Body          []byte // uncompressed, at most MaxStatement bytes
}

// IsAttestation says whether an index entry is an attestation manifest.
func IsAttestation(d v1.Descriptor) bool {
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest"
}

// Read reads every attestation manifest of idx with its statements.
func Read(idx v1.ImageIndex) ([]Attestation, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []Attestation
	for _, d := range im.Manifests {
		if !IsAttestation(d) {
			continue
		}
		a, err := readOne(idx, d)
		if err != nil {
			return nil, fmt.Errorf("attestation manifest %s: %w", d.Digest, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func readOne(idx v1.ImageIndex, d v1.Descriptor) (Attestation, error) {
	a := Attestation{Digest: d.Digest, Platform: d.Platform, Subject: d.Annotations["vnd.docker.reference.digest"]}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return a, err
	}
	if a.Manifest, err = img.RawManifest(); err != nil {
		return a, err
	}
	if a.Config, err = img.RawConfigFile(); err != nil {
		return a, err
	}
	m, err := img.Manifest()
	if err != nil {
		return a, err
	}
	for _, l := range m.Layers {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return a, err
		}
		rc, err := layer.Uncompressed()
		if err != nil {
			return a, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, MaxStatement))
		rc.Close()
		if err != nil {
			return a, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		a.Layers = append(a.Layers, Statement{Digest: l.Digest, MediaType: string(l.MediaType),
			PredicateType: l.Annotations["in-toto.io/predicate-type"], Body: b})
	}
	return a, nil
}

// Find is the first statement of a whose predicate type starts with
// prefix.
func (a Attestation) Find(prefix string) (Statement, bool) {
	for _, s := range a.Layers {
		if strings.HasPrefix(s.PredicateType, prefix) {
			return s, true
		}
	}
	return Statement{}, false
}

// Contains says where s occurs in the attestation (its manifest, config
// or a statement), "" when nowhere.
func (a Attestation) Contains(s string) string {
	if strings.Contains(string(a.Manifest)+string(a.Config), s) {
		return "manifest or config of " + a.Digest.String()
	}
	for _, l := range a.Layers {
		if strings.Contains(string(l.Body), s) {
			return "layer " + l.Digest.String()
		}
	}
	return ""
}
