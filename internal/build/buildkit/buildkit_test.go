package buildkit

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session/secrets"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

func TestCacheEntry(t *testing.T) {
	tests := []struct {
		in     string
		export bool
		want   client.CacheOptionsEntry
	}{
		{"ghcr.io/me/cache:gpu", false, client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "ghcr.io/me/cache:gpu"}}},
		{"ghcr.io/me/cache:gpu", true, client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "ghcr.io/me/cache:gpu", "mode": "max"}}},
		{"type=registry,ref=127.0.0.1:5000/c:x,mode=min", true, client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "127.0.0.1:5000/c:x", "mode": "min", "registry.insecure": "true"}}},
		{"type=gha,scope=gpu", false, client.CacheOptionsEntry{Type: "gha", Attrs: map[string]string{"scope": "gpu"}}},
	}
	for _, tc := range tests {
		spec, err := build.ParseCacheSpec(tc.in)
		if err != nil {
			t.Fatalf("ParseCacheSpec(%q): %v", tc.in, err)
		}
		if got := cacheEntry(spec, tc.export); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("cacheEntry(%q, %v) = %+v, want %+v", tc.in, tc.export, got, tc.want)
		}
	}
}

// A reference substituted from a variants file stays the ref attribute,
// whatever it contains: the entry is built as a map, never re-split.
func TestCacheEntryKeepsRefWhole(t *testing.T) {
	spec := build.CacheSpec{Type: "registry", Ref: "a.b,type=local,dest=/tmp/x:cache"}
	got := cacheEntry(spec, true)
	want := client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": spec.Ref, "mode": "max"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("cacheEntry = %+v, want %+v", got, want)
	}
}

func TestInsecure(t *testing.T) {
	for ref, want := range map[string]bool{
		"127.0.0.1:5000/runpod/x": true, "localhost:5000/x": true, "[::1]:5000/x": true,
		"docker.io/runpod/x": false, "10.0.0.1:5000/x": false, "ghcr.io/x": false,
	} {
		if got := insecure(ref); got != want {
			t.Errorf("insecure(%q) = %v", ref, got)
		}
	}
}

// A fake Docker Engine API on a unix socket: it must see an HTTP upgrade
// to h2c on /grpc, and session metadata as headers on /session.
func TestDockerEngineHijack(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan *http.Request, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				seen <- req
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+req.Header.Get("Upgrade")+"\r\n\r\nhello")
				time.Sleep(100 * time.Millisecond)
			}(c)
		}
	}()
	ctx := context.Background()
	conn, err := hijack(ctx, sock, "/grpc", "h2c", nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read after upgrade: %q %v", buf, err)
	}
	conn.Close()
	r := <-seen
	if r.Method != "POST" || r.URL.Path != "/grpc" || r.Header.Get("Upgrade") != "h2c" || !strings.EqualFold(r.Header.Get("Connection"), "Upgrade") {
		t.Errorf("grpc request = %s %s %v", r.Method, r.URL.Path, r.Header)
	}
	conn, err = hijack(ctx, sock, "/session", "h2c", map[string][]string{"X-Docker-Expose-Session-Uuid": {"abc"}})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if r := <-seen; r.URL.Path != "/session" || r.Header.Get("X-Docker-Expose-Session-Uuid") != "abc" {
		t.Errorf("session request = %s %v", r.URL.Path, r.Header)
	}
}

func TestNotReachableSaysHowToStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := New(ctx, Options{Addr: "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	if err == nil || !strings.Contains(err.Error(), "cannot reach BuildKit") || !strings.Contains(err.Error(), "buildkitd --addr") {
		t.Fatalf("err = %v", err)
	}
}

// --runner-netrc reaches BuildKit as the build secret runner_netrc, through
// the session: not a build argument, not a frontend attribute.
func TestSecretsGoThroughTheSession(t *testing.T) {
	netrc := []byte("machine mirror.example login u password p\n")
	req := &build.Request{
		Variant: &variants.Variant{Name: "cpu", Image: "docker.io/runpod/w", Platforms: []string{"linux/amd64"}},
		Secrets: map[string][]byte{"runner_netrc": netrc},
	}
	opt := solveOpt(req, nil, nil)
	for k, v := range opt.FrontendAttrs {
		if strings.Contains(v, "password") {
			t.Errorf("frontend attribute %s carries the secret", k)
		}
	}
	var got []byte
	for _, a := range opt.Session {
		if sp, ok := a.(interface {
			GetSecret(context.Context, *secrets.GetSecretRequest) (*secrets.GetSecretResponse, error)
		}); ok {
			resp, err := sp.GetSecret(context.Background(), &secrets.GetSecretRequest{ID: "runner_netrc"})
			if err != nil {
				t.Fatal(err)
			}
			got = resp.Data
		}
	}
	if string(got) != string(netrc) {
		t.Fatalf("secret runner_netrc = %q, want the file's content", got)
	}
	if opt := solveOpt(&build.Request{Variant: req.Variant}, nil, nil); len(opt.Session) != 1 {
		t.Errorf("without secrets: %d session attachables, want only the registry auth", len(opt.Session))
	}
}

// With no address and no BUILDKIT_HOST, New uses the Docker Engine's
// socket it is given when that exists, else buildkitd's default socket.
func TestDockerSocketIsAnOption(t *testing.T) {
	t.Setenv("BUILDKIT_HOST", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the file stays; nothing answers
	_, err = New(ctx, Options{DockerSocket: sock})
	if err == nil || !strings.Contains(err.Error(), "the Docker Engine's BuildKit at unix://"+sock) {
		t.Errorf("existing socket: err = %v", err)
	}
	_, err = New(ctx, Options{DockerSocket: filepath.Join(dir, "none.sock")})
	if err == nil || !strings.Contains(err.Error(), "cannot reach BuildKit at "+DefaultSocket) {
		t.Errorf("missing socket: err = %v", err)
	}
}

// Each output kind is one export: an OCI layout folder, a push by digest
// to the variant's repository, or a push of every tag.
func TestExportEntry(t *testing.T) {
	v := &variants.Variant{Name: "cpu", Image: "127.0.0.1:5000/runpod/w", Tags: []string{"127.0.0.1:5000/runpod/w:dev-cpu", "127.0.0.1:5000/runpod/w:latest-cpu"}}
	oci, err := build.OCILayout("/out/oci/cpu")
	if err != nil {
		t.Fatal(err)
	}
	push := map[string]string{"push": "true", "oci-mediatypes": "true", "registry.insecure": "true"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, x := range m {
			out[k] = x
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, tc := range []struct {
		out  build.Output
		want client.ExportEntry
	}{
		{oci, client.ExportEntry{Type: client.ExporterOCI, OutputDir: "/out/oci/cpu", Attrs: map[string]string{"tar": "false", "name": strings.Join(v.Tags, ",")}}},
		{build.PushByDigest(), client.ExportEntry{Type: client.ExporterImage, Attrs: with(push, "name", v.Image, "push-by-digest", "true")}},
		{build.PushTags(), client.ExportEntry{Type: client.ExporterImage, Attrs: with(push, "name", strings.Join(v.Tags, ","))}},
	} {
		if got := exportEntry(&build.Request{Variant: v, Output: tc.out}); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: %+v, want %+v", tc.out, got, tc.want)
		}
	}
	if c := (Options{}).Capabilities(); !c.Secrets || c.MaxJobs != 0 || c.ContextDir != "" {
		t.Errorf("capabilities %+v", c)
	}
}

// A named context (the worker binaries in place of the Dockerfile's worker
// stage) reaches BuildKit as the frontend's context:NAME=local:... with its
// folder mounted under that local name.
func TestNamedContextsAreLocalMounts(t *testing.T) {
	dir := t.TempDir()
	req := &build.Request{
		Variant:       &variants.Variant{Name: "cpu", Image: "docker.io/runpod/w", Platforms: []string{"linux/amd64"}},
		ContextDir:    dir,
		NamedContexts: map[string]string{"worker": dir},
	}
	opt, err := mountedSolveOpt(req, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := opt.FrontendAttrs["context:worker"]; got != "local:named-worker" {
		t.Errorf("context:worker = %q, want local:named-worker", got)
	}
	if opt.LocalMounts["named-worker"] == nil || opt.LocalMounts["context"] == nil || opt.LocalMounts["dockerfile"] == nil {
		t.Errorf("local mounts %v", opt.LocalMounts)
	}
	req.NamedContexts = map[string]string{"worker": filepath.Join(dir, "missing")}
	if _, err := mountedSolveOpt(req, t.TempDir()); err == nil || !strings.Contains(err.Error(), "named context worker") {
		t.Errorf("a missing named context folder: %v", err)
	}
}
