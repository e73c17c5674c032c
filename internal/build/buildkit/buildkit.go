// Package buildkit builds variants through a BuildKit daemon with its Go
// client: one client, concurrent solves, one progress display.
package buildkit

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/moby/buildkit/client"
	_ "github.com/moby/buildkit/client/connhelper/dockercontainer" // docker-container://
	_ "github.com/moby/buildkit/client/connhelper/kubepod"         // kube-pod://
	_ "github.com/moby/buildkit/client/connhelper/ssh"             // ssh://
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/util/progress/progresswriter"
	"github.com/tonistiigi/fsutil"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// DefaultSocket is buildkitd's default address when run as root.
const DefaultSocket = "unix:///run/buildkit/buildkitd.sock"

// DefaultDockerSocket is the Docker Engine's API socket, whose embedded
// BuildKit is used when no address is given.
const DefaultDockerSocket = "/var/run/docker.sock"

// TLS holds client TLS settings for tcp:// addresses.
type TLS struct {
	ServerName string
	CACert     string
	Cert       string
	Key        string
}

// Options configure a Builder.
type Options struct {
	// Addr is the BuildKit address; empty means BUILDKIT_HOST, then the
	// Docker Engine's embedded BuildKit, then DefaultSocket.
	Addr string
	TLS  TLS
	// DockerSocket is the Docker Engine's socket tried when there is no
	// address; DefaultDockerSocket when empty.
	DockerSocket string
	// Progress is the build display's mode on stderr (auto, tty, plain,
	// rawjson); empty or quiet shows none. The display starts with the
	// first build, so nothing printed before is drawn over.
	Progress string
}

// Capabilities: any number of builds at once, build secrets, named
// contexts, the build context read from any folder.
func (o Options) Capabilities() build.Capabilities {
	return build.Capabilities{Name: "BuildKit", Secrets: true, NamedContexts: true, Attestations: true}
}

// Open is New: Options is a build.Backend.
func (o Options) Open(ctx context.Context) (build.Session, error) { return New(ctx, o) }

// Builder is a build.Builder backed by one BuildKit client.
type Builder struct {
	c        *client.Client
	addr     string
	progress string // the display's mode; "" for none
	pw       progresswriter.Writer
	multi    *progresswriter.MultiWriter
	mu       sync.Mutex
	// started counts builds that attached to the progress display, whose
	// end the display waits for.
	started int
}

// New connects to BuildKit and checks that it answers.
func New(ctx context.Context, opts Options) (*Builder, error) {
	addr := opts.Addr
	if addr == "" {
		addr = os.Getenv("BUILDKIT_HOST")
	}
	var copts []client.ClientOpt
	if opts.TLS.CACert != "" || opts.TLS.Cert != "" {
		copts = append(copts, client.WithServerConfig(opts.TLS.ServerName, opts.TLS.CACert))
		if opts.TLS.Cert != "" {
			copts = append(copts, client.WithCredentials(opts.TLS.Cert, opts.TLS.Key))
		}
	}
	shown := addr
	if addr == "" {
		sock := cmp.Or(opts.DockerSocket, DefaultDockerSocket)
		if _, err := os.Stat(sock); err == nil {
			copts = append(copts, dockerEngineDialers(sock)...)
			addr, shown = "unix://"+sock, "the Docker Engine's BuildKit at unix://"+sock
		} else {
			addr, shown = DefaultSocket, DefaultSocket
		}
	}
	c, err := client.New(ctx, addr, copts...)
	if err != nil {
		return nil, notReachable(shown, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.ListWorkers(pctx); err != nil {
		c.Close()
		return nil, notReachable(shown, err)
	}
	b := &Builder{c: c, addr: shown}
	if opts.Progress != "quiet" {
		b.progress = opts.Progress
	}
	return b, nil
}

func notReachable(addr string, err error) error {
	return fmt.Errorf(`cannot reach BuildKit at %s: %v
Start a buildkitd and point imagegen at it, for example:
  buildkitd --addr unix:///run/buildkit/buildkitd.sock --oci-worker=true --containerd-worker=false &
  imagegen build --addr unix:///run/buildkit/buildkitd.sock
or run 'scripts/devenv up' in this repository (it starts one and prints its address),
or set BUILDKIT_HOST (unix://, tcp://, docker-container://, kube-pod://, ssh://)`, addr, err)
}

// Addr is the address the builder is connected to.
func (b *Builder) Addr() string { return b.addr }

// Capabilities are the Options' (see Options.Capabilities).
func (b *Builder) Capabilities() build.Capabilities { return Options{}.Capabilities() }

// Registry is a client with the Docker config's credentials, the ones
// BuildKit pushes with.
func (b *Builder) Registry() *registry.Client { return &registry.Client{} }

func (b *Builder) String() string { return "through " + b.addr }

// Close waits for the progress display to end, then closes the client.
func (b *Builder) Close() error {
	b.mu.Lock()
	pw, started := b.pw, b.started
	b.mu.Unlock()
	if pw != nil && started > 0 {
		<-pw.Done()
	}
	return b.c.Close()
}

// attach gives a build its prefixed stream of the progress display,
// starting the display with the first build; nil when there is none.
func (b *Builder) attach(ctx context.Context, variant string) (chan *client.SolveStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.progress == "" {
		return nil, nil
	}
	if b.multi == nil {
		pw, err := progresswriter.NewPrinter(context.WithoutCancel(ctx), os.Stderr, b.progress)
		if err != nil {
			return nil, err
		}
		b.pw, b.multi = pw, progresswriter.NewMultiWriter(pw)
	}
	b.started++
	return b.multi.WithPrefix(variant, true).Status(), nil
}

// Build builds one variant for all its platforms.
func (b *Builder) Build(ctx context.Context, req *build.Request) (*build.Result, error) {
	dfDir, err := os.MkdirTemp("", "imagegen-dockerfile-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dfDir)
	opt, err := mountedSolveOpt(req, dfDir)
	if err != nil {
		return nil, err
	}
	out, err := b.attach(ctx, req.Variant.Name)
	if err != nil {
		return nil, err
	}
	ch, counter, done := pump(out)
	start := time.Now()
	resp, err := b.c.Solve(ctx, nil, opt, ch)
	<-done
	if err != nil {
		return nil, fmt.Errorf("%s", cleanError(err))
	}
	res := &build.Result{
		Digest:   resp.ExporterResponse["containerimage.digest"],
		Duration: time.Since(start),
	}
	res.Steps, res.CachedSteps = counter.counts()
	if res.Digest == "" {
		return nil, fmt.Errorf("BuildKit returned no image digest")
	}
	return res, nil
}

// mountedSolveOpt writes the Dockerfile into dfDir and gives the solve
// request with the build context, that folder and the named contexts
// mounted.
func mountedSolveOpt(req *build.Request, dfDir string) (client.SolveOpt, error) {
	if err := os.WriteFile(filepath.Join(dfDir, "Dockerfile"), req.Dockerfile, 0o644); err != nil {
		return client.SolveOpt{}, err
	}
	ctxFS, err := fsutil.NewFS(req.ContextDir)
	if err != nil {
		return client.SolveOpt{}, fmt.Errorf("build context %s: %w", req.ContextDir, err)
	}
	dfFS, err := fsutil.NewFS(dfDir)
	if err != nil {
		return client.SolveOpt{}, err
	}
	opt := solveOpt(req, ctxFS, dfFS)
	for name, dir := range req.NamedContexts {
		fs, err := fsutil.NewFS(dir)
		if err != nil {
			return client.SolveOpt{}, fmt.Errorf("named context %s: %w", name, err)
		}
		// What `docker buildx build --build-context NAME=DIR` sends.
		local := "named-" + name
		opt.LocalMounts[local] = fs
		opt.FrontendAttrs["context:"+name] = "local:" + local
	}
	return opt, nil
}

// pump counts the steps of the statuses sent to ch and passes them on to
// out (the progress display; nil for none), closing it and done at the
// end.
func pump(out chan *client.SolveStatus) (ch chan *client.SolveStatus, counter *stepCounter, done chan struct{}) {
	ch, counter, done = make(chan *client.SolveStatus), newStepCounter(), make(chan struct{})
	go func() {
		defer close(done)
		for st := range ch {
			counter.add(st)
			if out != nil {
				out <- st
			}
		}
		if out != nil {
			close(out)
		}
	}()
	return ch, counter, done
}

// solveOpt is the solve request for one variant: its export, caches
// (structured, see cacheEntry), registry credentials and build secrets.
func solveOpt(req *build.Request, ctxFS, dfFS fsutil.FS) client.SolveOpt {
	v := req.Variant
	opt := client.SolveOpt{
		Frontend: "dockerfile.v0",
		FrontendAttrs: map[string]string{
			"filename": "Dockerfile",
			"platform": strings.Join(v.Platforms, ","),
		},
		LocalMounts: map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		Exports:     []client.ExportEntry{exportEntry(req)},
		Session: []session.Attachable{authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
			AuthConfigProvider: authprovider.LoadAuthConfig(config.LoadDefaultConfigFile(os.Stderr)),
		})},
		SharedKey: "imagegen-context",
	}
	if len(req.Secrets) > 0 {
		opt.Session = append(opt.Session, secretsprovider.FromMap(req.Secrets))
	}
	// What buildx sends for --attest: attest:TYPE=type=TYPE,KEY=VALUE...
	for _, a := range req.Attest {
		opt.FrontendAttrs["attest:"+a.Type] = a.String()
	}
	vcsAttrs(opt.FrontendAttrs, req)
	for _, spec := range req.Cache.From {
		opt.CacheImports = append(opt.CacheImports, cacheEntry(spec, false))
	}
	for _, spec := range req.Cache.To {
		opt.CacheExports = append(opt.CacheExports, cacheEntry(spec, true))
	}
	return opt
}

// vcsAttrs are buildx's vcs:source and vcs:revision, which BuildKit puts
// in the provenance: sent only when the image carries one.
func vcsAttrs(attrs map[string]string, req *build.Request) {
	if !slices.ContainsFunc(req.Attest, func(a variants.Attestation) bool { return a.Type == variants.AttestProvenance }) {
		return
	}
	if req.VCS.Source != "" {
		attrs["vcs:source"] = req.VCS.Source
	}
	if req.VCS.Revision != "" {
		attrs["vcs:revision"] = req.VCS.Revision
	}
}

// exportEntry pushes the image (by digest, or with its tags) or writes it
// as an OCI layout, its layers compressed as the variant says.
func exportEntry(req *build.Request) client.ExportEntry {
	v := req.Variant
	export := client.ExportEntry{Attrs: map[string]string{}}
	compressionAttrs(export.Attrs, v)
	if req.Output.Kind() == build.OCILayoutKind {
		export.Type = client.ExporterOCI
		export.OutputDir = req.Output.Dir()
		export.Attrs["tar"] = "false"
		export.Attrs["name"] = strings.Join(v.Tags, ",")
		return export
	}
	export.Type = client.ExporterImage
	export.Attrs["push"] = "true"
	export.Attrs["oci-mediatypes"] = "true"
	if req.Output.Kind() == build.PushByDigestKind {
		export.Attrs["name"] = v.Image
		export.Attrs["push-by-digest"] = "true"
	} else {
		export.Attrs["name"] = strings.Join(v.Tags, ",")
	}
	if insecure(v.Image) {
		export.Attrs["registry.insecure"] = "true"
	}
	return export
}

// compressionAttrs are the exporter's layer compression attributes (both
// the image and the OCI exporter take them): compression,
// compression-level, force-compression, and OCI media types for zstd,
// which Docker's media types cannot express.
func compressionAttrs(attrs map[string]string, v *variants.Variant) {
	if v.Compression == "" {
		return
	}
	attrs["compression"] = v.Compression
	if v.CompressionLevel != nil {
		attrs["compression-level"] = strconv.Itoa(*v.CompressionLevel)
	}
	if v.ForceCompression {
		attrs["force-compression"] = "true"
	}
	if v.Compression == variants.CompressionZstd {
		attrs["oci-mediatypes"] = "true"
	}
}

// cacheEntry turns a parsed cache spec into BuildKit's structured form:
// the attributes travel as a map, never as a string split again.
func cacheEntry(spec build.CacheSpec, export bool) client.CacheOptionsEntry {
	attrs := maps.Clone(spec.Attrs)
	if attrs == nil {
		attrs = map[string]string{}
	}
	if spec.Ref != "" {
		attrs["ref"] = spec.Ref
	}
	if _, ok := attrs["mode"]; export && !ok {
		attrs["mode"] = "max"
	}
	if spec.Type == "registry" && insecure(spec.Ref) {
		attrs["registry.insecure"] = "true"
	}
	return client.CacheOptionsEntry{Type: spec.Type, Attrs: attrs}
}

// insecure says whether a reference's registry is on loopback, where plain
// HTTP is the norm (as go-containerregistry and BuildKit assume for pulls).
func insecure(ref string) bool { return registry.IsLoopback(ref) }

// cleanError drops gRPC's framing from BuildKit errors.
func cleanError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "rpc error: code = Unknown desc = ")
	return s
}

var dockerfileStep = regexp.MustCompile(`^\[[^\]]* [0-9]+/[0-9]+\] `)

// stepCounter counts completed vertices and how many came from cache.
type stepCounter struct {
	mu     sync.Mutex
	done   map[string]bool
	cached map[string]bool
}

func newStepCounter() *stepCounter {
	return &stepCounter{done: map[string]bool{}, cached: map[string]bool{}}
}

func (s *stepCounter) add(st *client.SolveStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range st.Vertexes {
		// Only Dockerfile steps that do work ("[stage-1 3/5] RUN ..."): not
		// FROM (resolved, never "cached"), exports, metadata or context.
		if v.Completed == nil || !dockerfileStep.MatchString(v.Name) || strings.Contains(v.Name, "] FROM ") {
			continue
		}
		s.done[v.Digest.String()] = true
		if v.Cached {
			s.cached[v.Digest.String()] = true
		}
	}
}

func (s *stepCounter) counts() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.done), len(s.cached)
}
