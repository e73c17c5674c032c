// Package kaniko builds variants with the Kaniko executor, run as a child
// process: for building inside a container with no Docker daemon (a RunPod
// runner). Kaniko owns the root file system of the container it runs in,
// so builds run one at a time, each followed by --cleanup, and never where
// they would overwrite a host's root file system.
package kaniko

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/platform"
	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// DefaultExecutor is where the Kaniko image (and ours) keeps the executor.
const DefaultExecutor = "/kaniko/executor"

// DefaultWorkDir is Kaniko's folder when imagegen runs it. Not /kaniko: the
// image we build has /kaniko/executor, and Kaniko neither snapshots its own
// folder nor can overwrite the executor it runs from.
const DefaultWorkDir = "/tmp/imagegen-kaniko"

// Options configure a Builder.
type Options struct {
	Executor string // DefaultExecutor when empty
	// Force runs Kaniko even where it looks like a host, not a container
	// made for Kaniko (it passes --force to the executor too).
	Force bool
	// ExtraArgs are passed to the executor as they are
	// (--registry-map=..., --verbosity=debug, ...).
	ExtraArgs []string
	// WorkDir is Kaniko's folder (--kaniko-dir). Kaniko wipes the whole
	// file system except this folder and mount points, so imagegen keeps
	// everything it needs here: the executor, Dockerfiles, the build
	// context, digest files, tarballs and registry credentials.
	// DefaultWorkDir when empty.
	WorkDir string
	// Output receives the executor's output, each line prefixed with the
	// variant; nil discards it.
	Output io.Writer
}

// Builder is a build.Builder running the Kaniko executor.
type Builder struct {
	o Options
	// dockerConfig is the folder of the Docker config kept in Kaniko's
	// folder: the executor's DOCKER_CONFIG, and Keychain's source.
	dockerConfig string
	mu           sync.Mutex // one build at a time: Kaniko owns the file system
}

// Capabilities: one build at a time (Kaniko owns the root file system),
// no build secrets, and the build context inside Kaniko's folder.
func (o Options) Capabilities() build.Capabilities {
	dir := o.WorkDir
	if dir == "" {
		dir = DefaultWorkDir
	}
	return build.Capabilities{Name: "Kaniko", MaxJobs: 1, ContextDir: filepath.Join(dir, "imagegen", "context"), Check: checkCompression}
}

// Open is New: Options is a build.Backend.
func (o Options) Open(context.Context) (build.Session, error) { return New(o) }

// New checks that Kaniko may run here.
func New(o Options) (*Builder, error) {
	if o.Executor == "" {
		o.Executor = DefaultExecutor
	}
	if _, err := os.Stat(o.Executor); err != nil {
		return nil, fmt.Errorf("kaniko executor: %w (give its path with --kaniko-executor)", err)
	}
	if !o.Force {
		if err := SafeHere(); err != nil {
			return nil, err
		}
	}
	if o.WorkDir == "" {
		o.WorkDir = DefaultWorkDir
	}
	if err := os.MkdirAll(filepath.Join(o.WorkDir, "imagegen"), 0o700); err != nil {
		return nil, err
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	// Kaniko deletes /etc/ssl and the Docker config with the rest of the
	// file system: load the CA roots now (Go caches them) and copy the
	// credentials into Kaniko's folder, for Kaniko (DOCKER_CONFIG in its
	// environment) and imagegen (Keychain) alike.
	x509.SystemCertPool()
	b := &Builder{o: o, dockerConfig: filepath.Join(o.WorkDir, "imagegen", ".docker")}
	if err := keepDockerConfig(b.dockerConfig); err != nil {
		return nil, err
	}
	return b, nil
}

// Keychain gives the registry credentials of the Docker config New kept
// in Kaniko's folder: the one that outlives Kaniko's wiping of the file
// system. Registry clients used alongside the builder need it.
func (b *Builder) Keychain() authn.Keychain { return registry.ConfigKeychain(b.dockerConfig) }

// Capabilities are the Options' (see Options.Capabilities).
func (b *Builder) Capabilities() build.Capabilities { return b.o.Capabilities() }

// Registry publishes with the credentials kept in Kaniko's folder.
func (b *Builder) Registry() *registry.Client { return &registry.Client{Keychain: b.Keychain()} }

func (b *Builder) String() string {
	return "with Kaniko, one at a time (it owns the root file system; --cleanup after each)"
}

// Close does nothing: each build cleans up after itself.
func (b *Builder) Close() error { return nil }

// keepDockerConfig copies the Docker config (DOCKER_CONFIG, ~/.docker, or
// Kaniko's /kaniko/.docker) into dir.
func keepDockerConfig(dir string) error {
	var src []byte
	for _, d := range []string{os.Getenv("DOCKER_CONFIG"), filepath.Join(os.Getenv("HOME"), ".docker"), "/kaniko/.docker"} {
		if d == "" {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, "config.json")); err == nil {
			src = b
			break
		}
	}
	if src == nil {
		src = []byte("{}")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), src, 0o600)
}

// SafeHere says whether Kaniko can run without destroying a host: inside a
// container (a marker file or a container cgroup) that carries Kaniko's
// own /kaniko directory. Kaniko unpacks base images over "/".
func SafeHere() error {
	inContainer := false
	for _, f := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(f); err == nil {
			inContainer = true
		}
	}
	if b, err := os.ReadFile("/proc/1/cgroup"); err == nil && regexp.MustCompile(`docker|kubepods|containerd|libpod|lxc`).Match(b) {
		inContainer = true
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" || os.Getenv("container") != "" {
		inContainer = true
	}
	if b, err := os.ReadFile("/proc/1/comm"); err == nil {
		if c := strings.TrimSpace(string(b)); c != "systemd" && c != "init" {
			inContainer = true
		}
	}
	if st, err := os.Stat("/kaniko"); !inContainer || err != nil || !st.IsDir() {
		return errors.New("refusing to run Kaniko here: it overwrites the root file system it runs in, so it only runs in a container made for it (with /kaniko, like the worker image); use --kaniko-force if this really is a throwaway container")
	}
	return nil
}

// kanikoDir is Kaniko's working folder (see DefaultWorkDir).
func (b *Builder) kanikoDir() string { return b.o.WorkDir }

// privateExecutor copies the executor into Kaniko's folder once: Kaniko
// copies itself to <kaniko-dir>/executor, so the copy lives beside it.
func (b *Builder) privateExecutor() (string, error) {
	dir := filepath.Join(b.o.WorkDir, "imagegen", "bin")
	dst := filepath.Join(dir, "executor")
	if st, err := os.Stat(dst); err == nil && st.Mode().IsRegular() {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(b.o.Executor)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(dst+".tmp", dst)
}

// files are the paths one build uses.
type files struct {
	dir, dockerfile, digest, nameDigest, tar string
}

func (b *Builder) files(variant string) files {
	d := filepath.Join(b.o.WorkDir, "imagegen", "builds", variant)
	return files{dir: d, dockerfile: filepath.Join(d, "Dockerfile"), digest: filepath.Join(d, "digest"),
		nameDigest: filepath.Join(d, "image-name-with-digest"), tar: filepath.Join(d, "image.tar")}
}

// Args is the executor command line for a request (without the executor).
func (b *Builder) Args(req *build.Request) ([]string, error) {
	p, err := checkRequest(req)
	if err != nil {
		return nil, err
	}
	v := req.Variant
	f := b.files(v.Name)
	args := []string{
		"--kaniko-dir=" + b.kanikoDir(),
		"--dockerfile=" + f.dockerfile,
		"--context=dir://" + req.ContextDir,
		"--custom-platform=" + p.Name,
		"--build-arg=TARGETARCH=" + p.DockerArch,
		"--digest-file=" + f.digest,
		"--image-name-with-digest-file=" + f.nameDigest,
		"--reproducible",
		"--cleanup",
	}
	var pushed []string // the references Kaniko itself pushes to
	if req.Output.Kind() == build.PushTagsKind {
		for _, t := range v.Tags {
			args = append(args, "--destination="+t)
		}
		pushed = v.Tags
	} else {
		// An image pushed by digest or written as an OCI layout starts
		// from a tarball, which build.Publish sends on.
		args = append(args, "--no-push", "--tar-path="+f.tar, "--destination="+v.Image+":imagegen-build")
	}
	repo, err := cacheRepo(req.Cache)
	if err != nil {
		return nil, err
	}
	if repo != "" {
		args = append(args, "--cache=true", "--cache-repo="+repo)
		pushed = append(pushed, repo)
	}
	if err := checkCompression(req); err != nil {
		return nil, err
	}
	args = append(args, compressionArgs(v)...)
	if err := CheckExtraArgs(b.o.ExtraArgs); err != nil {
		return nil, err
	}
	if b.o.Force {
		args = append(args, "--force")
	}
	args = append(args, insecureArgs(pushed)...)
	return append(args, b.o.ExtraArgs...), nil
}

// checkRequest refuses what Kaniko cannot do (build secrets, several
// platforms in one image) and gives the request's platform.
func checkRequest(req *build.Request) (platform.Platform, error) {
	v := req.Variant
	if len(req.Secrets) > 0 {
		return platform.Platform{}, errors.New("kaniko has no build secrets (RUN --mount=type=secret): build with BuildKit to pass --runner-netrc")
	}
	if len(v.Platforms) != 1 {
		return platform.Platform{}, fmt.Errorf("kaniko builds one platform per image; variant %s has %s (build it with BuildKit, or --set '%s.platforms=linux/amd64')", v.Name, strings.Join(v.Platforms, ", "), v.Name)
	}
	p, ok := platform.Lookup(v.Platforms[0])
	if !ok {
		return platform.Platform{}, fmt.Errorf("kaniko: variant %s: unsupported platform %.64q; use one of %s", v.Name, v.Platforms[0], strings.Join(platform.Names(), ", "))
	}
	return p, nil
}

// checkCompression refuses the layer compressions imagegen cannot get
// from Kaniko: zstd (Kaniko writes it only on a base image with OCI media
// types, and the docker tarball imagegen publishes cannot say a layer is
// zstd), uncompressed layers and forced re-compression (Kaniko has
// neither), and level 0 (Kaniko ignores levels below 1).
func checkCompression(req *build.Request) error {
	v := req.Variant
	switch {
	case v.Compression == variants.CompressionZstd:
		return errors.New("kaniko cannot build zstd layers here (it writes zstd only on bases with OCI media types, which the docker tarball imagegen publishes cannot carry): build with BuildKit, or use compression = \"gzip\"")
	case v.Compression != "" && v.Compression != variants.CompressionGzip:
		return fmt.Errorf("kaniko cannot build %s layers (it always compresses them): build with BuildKit, or use compression = \"gzip\"", v.Compression)
	case v.ForceCompression:
		return errors.New("kaniko cannot re-compress the base image's layers (force_compression): build with BuildKit, or drop force_compression")
	case v.CompressionLevel != nil && *v.CompressionLevel < 1:
		return fmt.Errorf("kaniko ignores compression level %d (it applies 1 to 9): build with BuildKit, or set compression_level between 1 and 9", *v.CompressionLevel)
	}
	return nil
}

// compressionArgs are Kaniko's compression flags: none for its default
// (gzip at gzip's default level).
func compressionArgs(v *variants.Variant) []string {
	if v.CompressionLevel == nil {
		return nil
	}
	return []string{"--compression=gzip", fmt.Sprintf("--compression-level=%d", *v.CompressionLevel)}
}

// ownedFlags are the executor flags imagegen sets itself, or that would
// change what it builds, from where, or where the image goes: an extra
// argument may not set them (--compression* by prefix). Short forms too.
var ownedFlags = []string{
	"kaniko-dir", "dockerfile", "f", "context", "c", "context-sub-path", "bucket", "b", "git",
	"custom-platform", "customPlatform", "target", "destination", "d", "no-push", "tar-path", "tarPath",
	"digest-file", "image-name-with-digest-file", "oci-layout-path", "reproducible", "cleanup",
	"cache", "cache-repo", "force",
}

// CheckExtraArgs refuses extra executor arguments that set a flag imagegen
// owns (ownedFlags, --compression*, --build-arg=TARGETARCH): the variant
// and imagegen's own flags say those. The error names the flag, never the
// value.
func CheckExtraArgs(args []string) error {
	for i, a := range args {
		if a == "--build-arg" && i+1 < len(args) { // --build-arg NAME=VALUE
			a += "=" + args[i+1]
		}
		if flag := ownedFlag(a); flag != "" {
			return fmt.Errorf("%s is set by imagegen (from variants.hcl and its own flags); it cannot be passed to Kaniko", flag)
		}
	}
	return nil
}

// ownedFlag is the flag a sets, as given (--name or -x), if imagegen owns
// it; else "".
func ownedFlag(a string) string {
	switch {
	case strings.HasPrefix(a, "--"):
		name, val, _ := strings.Cut(a[2:], "=")
		switch {
		case slices.Contains(ownedFlags, name), strings.HasPrefix(name, "compression"):
			return "--" + name
		case name == "build-arg" && (val == "TARGETARCH" || strings.HasPrefix(val, "TARGETARCH=")):
			return "--build-arg=TARGETARCH"
		}
	case len(a) >= 2 && a[0] == '-':
		// -dVALUE, -d=VALUE, -d VALUE: the first letter is the flag.
		if short := a[1:2]; slices.Contains(ownedFlags, short) {
			return "-" + short
		}
	}
	return ""
}

// insecureArgs lets Kaniko use plain HTTP with the loopback registries
// among refs, each named once, sorted.
func insecureArgs(refs []string) []string {
	insecure := map[string]bool{}
	for _, ref := range refs {
		if registry.IsLoopback(ref) {
			h, _, _ := strings.Cut(ref, "/")
			insecure[h] = true
		}
	}
	var args []string
	for _, h := range slices.Sorted(maps.Keys(insecure)) {
		args = append(args, "--insecure-registry="+h)
	}
	return args
}

// cacheRepo picks Kaniko's one cache repository: it reads and writes the
// same one, and only registry caches exist for it.
func cacheRepo(c build.Cache) (string, error) {
	all := append(append([]build.CacheSpec{}, c.To...), c.From...)
	for _, spec := range all {
		if spec.Type != "registry" {
			return "", fmt.Errorf("kaniko caches only in a registry, not type=%s", spec.Type)
		}
	}
	if len(all) == 0 {
		return "", nil
	}
	return stripTag(all[0].Ref), nil
}

// stripTag keeps the repository: Kaniko tags cache layers itself.
func stripTag(ref string) string {
	if r, err := name.ParseReference(ref); err == nil {
		return r.Context().Name()
	}
	return ref
}

var (
	stepRE   = regexp.MustCompile(`\] (RUN|COPY|ADD) `)
	cachedRE = regexp.MustCompile(`Using caching version of cmd: |Found cached layer, extracting to filesystem`)
)

// Build runs the executor for one variant, then publishes its image
// unless Kaniko pushed it with its tags.
func (b *Builder) Build(ctx context.Context, req *build.Request) (*build.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	args, err := b.Args(req)
	if err != nil {
		return nil, err
	}
	f := b.files(req.Variant.Name)
	if err := f.prepare(req.Dockerfile); err != nil {
		return nil, err
	}
	start := time.Now()
	steps, cached, err := b.execute(ctx, req.Variant.Name, args)
	if err != nil {
		return nil, err
	}
	res := &build.Result{Duration: time.Since(start), Steps: steps, CachedSteps: min(cached, steps)}
	if req.Output.Kind() == build.PushTagsKind {
		res.Digest, err = f.pushedDigest()
	} else {
		res.Digest, err = b.publish(ctx, f, req)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// prepare clears the files of an earlier build and writes the Dockerfile.
func (f files) prepare(dockerfile []byte) error {
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return err
	}
	for _, p := range []string{f.digest, f.nameDigest, f.tar} {
		os.Remove(p)
	}
	return os.WriteFile(f.dockerfile, dockerfile, 0o644)
}

// execute runs the executor, its output prefixed with the variant, and
// counts the steps and those that came from cache.
func (b *Builder) execute(ctx context.Context, variant string, args []string) (steps, cached int, err error) {
	exe, err := b.privateExecutor()
	if err != nil {
		return 0, 0, fmt.Errorf("copy the kaniko executor: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), "KANIKO_DIR="+b.kanikoDir(), "DOCKER_CONFIG="+b.dockerConfig)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("start kaniko: %w", err)
	}
	var last []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintf(b.o.Output, "[%s] %s\n", variant, line)
		if stepRE.MatchString(line) {
			steps++
		}
		if cachedRE.MatchString(line) {
			cached++
		}
		last = append(last, line)
		if len(last) > 5 {
			last = last[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("kaniko failed (%v): %s", err, strings.Join(last, " | "))
	}
	return steps, cached, nil
}

// pushedDigest is the digest of the image Kaniko pushed with its tags,
// from its digest files (which must agree).
func (f files) pushedDigest() (string, error) {
	digest, err := ReadDigestFile(f.digest)
	if err != nil {
		return "", err
	}
	refs, err := ReadImageNameWithDigest(f.nameDigest)
	if err != nil {
		return "", err
	}
	for _, r := range refs {
		if !strings.HasSuffix(r, "@"+digest) {
			return "", fmt.Errorf("kaniko's digest files disagree: %s vs %s", r, digest)
		}
	}
	return digest, nil
}

// publish sends Kaniko's tarball where the output says, through
// build.Publish (as every locally built image), then removes it.
func (b *Builder) publish(ctx context.Context, f files, req *build.Request) (string, error) {
	img, err := tarball.ImageFromPath(f.tar, nil)
	if err != nil {
		return "", fmt.Errorf("read kaniko's image: %w", err)
	}
	d, err := build.Publish(ctx, b.Registry(), img, req)
	if err != nil {
		return "", err
	}
	os.Remove(f.tar)
	return d, nil
}

// ReadDigestFile reads --digest-file: one sha256:... digest.
func ReadDigestFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kaniko wrote no digest file: %w", err)
	}
	d := strings.TrimSpace(string(b))
	if _, err := v1.NewHash(d); err != nil {
		return "", fmt.Errorf("digest file %s: %q is not a digest", path, d)
	}
	return d, nil
}

// ReadImageNameWithDigest reads --image-name-with-digest-file: one
// repo[:tag]@sha256:... line per destination.
func ReadImageNameWithDigest(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kaniko wrote no image-name-with-digest file: %w", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if _, err := name.NewDigest(l); err != nil {
			return nil, fmt.Errorf("image-name-with-digest file %s: %q: %w", path, l, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("image-name-with-digest file %s is empty", path)
	}
	return out, nil
}
