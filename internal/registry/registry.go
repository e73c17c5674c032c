// Package registry talks to OCI registries through go-containerregistry:
// it writes the tags of images pushed by digest, all or nothing (tag.go),
// and inspects what was published. Credentials come from the Docker config
// file, as for BuildKit.
package registry

import (
	"context"
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
