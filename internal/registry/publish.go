package registry

import (
	"context"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushByDigest pushes img to the repository without a tag and returns its
// digest. It is not bounded by Timeout: an image may take long to upload.
func (c *Client) PushByDigest(ctx context.Context, repository string, img v1.Image) (string, error) {
	repo, err := name.NewRepository(repository)
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	if err := remote.Write(repo.Digest(d.String()), img, c.options(ctx)...); err != nil {
		return "", fmt.Errorf("push %s@%s: %w", repository, d, err)
	}
	return d.String(), nil
}

// WriteLayout replaces dir with an OCI layout holding img, annotated with
// refName (org.opencontainers.image.ref.name) when it is not empty.
func WriteLayout(dir string, img v1.Image, refName string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	ann := map[string]string{}
	if refName != "" {
		ann["org.opencontainers.image.ref.name"] = refName
	}
	return p.AppendImage(img, layout.WithAnnotations(ann))
}
