package buildkit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/moby/buildkit/client"
)

// dockerEngineDialers reach the BuildKit embedded in a Docker Engine, as
// buildx's docker driver does: the Engine API upgrades POST /grpc (h2c) to
// BuildKit's control API and POST /session to a build session.
func dockerEngineDialers(sock string) []client.ClientOpt {
	return []client.ClientOpt{
		client.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return hijack(ctx, sock, "/grpc", "h2c", nil)
		}),
		client.WithSessionDialer(func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
			return hijack(ctx, sock, "/session", proto, meta)
		}),
	}
}

func hijack(ctx context.Context, sock, path, proto string, meta map[string][]string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker"+path, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", proto)
	for k, v := range meta {
		req.Header[k] = v
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, fmt.Errorf("docker engine refused %s upgrade on %s: %s", proto, path, resp.Status)
	}
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn reads first what the response reader already buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
