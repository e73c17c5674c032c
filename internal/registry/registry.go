// Package registry talks to OCI registries through go-containerregistry:
// it writes tags for images pushed by digest, and inspects what was
// published. Credentials come from the Docker config file, as for BuildKit.
package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Client is a registry client; the zero value uses the Docker config's
// credentials and the default transport.
type Client struct {
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	// Timeout bounds each operation; 0 means 5 minutes.
	Timeout time.Duration
}

func (c *Client) options(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if c.Transport != nil {
		opts = append(opts, remote.WithTransport(c.Transport))
	}
	return opts
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 5 * time.Minute
}

// Tag points every tag (a full reference) at image@digest. Tags in the same
// repository are written as a manifest only; tags elsewhere copy the image
// (blobs are mounted where the registry allows).
func (c *Client) Tag(ctx context.Context, image, digest string, tags []string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	repo, err := name.NewRepository(image)
	if err != nil {
		return fmt.Errorf("image %q: %w", image, err)
	}
	src := repo.Digest(digest)
	desc, err := remote.Get(src, c.options(ctx)...)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	for _, t := range tags {
		tag, err := name.NewTag(t)
		if err != nil {
			return fmt.Errorf("tag %q: %w", t, err)
		}
		if tag.Context().String() == repo.String() {
			err = remote.Tag(tag, desc, c.options(ctx)...)
		} else if desc.MediaType.IsIndex() {
			var idx v1.ImageIndex
			if idx, err = desc.ImageIndex(); err == nil {
				err = remote.WriteIndex(tag, idx, c.options(ctx)...)
			}
		} else {
			var img v1.Image
			if img, err = desc.Image(); err == nil {
				err = remote.Write(tag, img, c.options(ctx)...)
			}
		}
		if err != nil {
			return fmt.Errorf("tag %s: %w", t, err)
		}
	}
	return nil
}

// IsLoopback says whether a reference's registry (host[:port] before the
// first '/') is on loopback: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(ref string) bool {
	host, _, _ := strings.Cut(ref, "/")
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = strings.Trim(host, "[]")
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Resolve returns the digest a reference points at.
func (c *Client) Resolve(ctx context.Context, ref string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(r, c.options(ctx)...)
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

// Image returns the image at ref for platform (for an index).
func (c *Client) Image(ctx context.Context, ref, platform string) (v1.Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	return remote.Image(r, append(c.options(ctx), remote.WithPlatform(*p))...)
}
