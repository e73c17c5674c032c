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
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Client is a registry client; the zero value uses the Docker config's
// credentials and the default transport.
type Client struct {
	// Keychain gives the credentials; nil means authn.DefaultKeychain (the
	// Docker config that DOCKER_CONFIG or ~/.docker holds).
	Keychain authn.Keychain
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	// Timeout bounds each operation; 0 means 5 minutes.
	Timeout time.Duration
}

func (c *Client) options(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(c.keychain())}
	if c.Transport != nil {
		opts = append(opts, remote.WithTransport(c.Transport))
	}
	return opts
}

func (c *Client) keychain() authn.Keychain {
	if c.Keychain != nil {
		return c.Keychain
	}
	return authn.DefaultKeychain
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
