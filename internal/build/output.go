package build

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/runpod-workers/worker-github_runner/internal/registry"
)

// OutputKind is where an image goes; see Output.
type OutputKind int

const (
	// OCILayoutKind writes the image as an OCI layout into a folder.
	OCILayoutKind OutputKind = iota + 1
	// PushByDigestKind pushes the image to its repository without tags;
	// Run writes the tags once every variant built (atomic mode).
	PushByDigestKind
	// PushTagsKind pushes the image with every tag as soon as it is built
	// (--no-atomic); the backend writes the tags itself.
	PushTagsKind
)

// Output says where an image goes: an OCI layout folder, a push by digest,
// or a push with tags. It is made only by OCILayout, PushByDigest and
// PushTags, so no combination is invalid; the zero Output is "no output",
// which Run refuses.
type Output struct {
	kind OutputKind
	dir  string
}

// OCILayout writes the image as an OCI layout into dir, an absolute path.
func OCILayout(dir string) (Output, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return Output{}, errors.New("an OCI layout output needs an absolute folder")
	}
	return Output{kind: OCILayoutKind, dir: filepath.Clean(dir)}, nil
}

// PushByDigest pushes the image without tags; Run tags it later.
func PushByDigest() Output { return Output{kind: PushByDigestKind} }

// PushTags pushes the image with its tags at once.
func PushTags() Output { return Output{kind: PushTagsKind} }

// Kind says which output this is; 0 for the zero Output.
func (o Output) Kind() OutputKind { return o.kind }

// Dir is the OCI layout folder ("" unless Kind is OCILayoutKind).
func (o Output) Dir() string { return o.dir }

// Pushes says whether the image goes to a registry.
func (o Output) Pushes() bool { return o.kind == PushByDigestKind || o.kind == PushTagsKind }

// String describes the output for people (a dry run's OUTPUT column).
func (o Output) String() string {
	switch o.kind {
	case OCILayoutKind:
		return o.dir
	case PushByDigestKind:
		return "push by digest, tags after all"
	case PushTagsKind:
		return "push (tags at once)"
	}
	return "no output"
}

// Publish sends an image a backend built locally (Kaniko's tarball) where
// the request's output says, through the same registry client that tags:
// pushed by digest to the variant's repository, or written as an OCI
// layout named after its first tag. It returns the image's digest. A
// PushTags output is the backend's to push.
func Publish(ctx context.Context, rc *registry.Client, img v1.Image, req *Request) (string, error) {
	v := req.Variant
	switch req.Output.Kind() {
	case PushByDigestKind:
		return rc.PushByDigest(ctx, v.Image, img)
	case OCILayoutKind:
		d, err := img.Digest()
		if err != nil {
			return "", err
		}
		name := ""
		if len(v.Tags) > 0 {
			name = v.Tags[0]
		}
		return d.String(), registry.WriteLayout(req.Output.Dir(), img, name)
	}
	return "", fmt.Errorf("variant %s: %s is not published from a local image", v.Name, req.Output)
}
