package imagegen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/build/buildkit"
	"github.com/runpod-workers/worker-github_runner/internal/build/kaniko"
	"github.com/runpod-workers/worker-github_runner/internal/build/workerbin"
	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/render"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

type buildFlags struct {
	addr          string
	tls           buildkit.TLS
	jobs          int
	progress      string
	push          bool
	noAtomic      bool
	outDir        string
	cacheFrom     []string
	cacheTo       []string
	metadataFile  string
	dryRun        bool
	workerBins    []string
	workerVersion string
	builder       string
	kanikoExec    string
	kanikoArgs    []string
	kanikoForce   bool
	kanikoDir     string
	runnerNetrc   string
	attest        []string
	// attests are --attest parsed (validate).
	attests []variants.Attestation
}

// runnerNetrcSecret is the BuildKit secret the Dockerfile mounts (optional)
// at /run/secrets/runner_netrc, for a runner mirror that needs credentials.
const runnerNetrcSecret = "runner_netrc"

func newBuildCommand(mf *matrixFlags) *cobra.Command {
	bf := &buildFlags{}
	cmd := &cobra.Command{
		Use:   "build [VARIANT...]",
		Short: "Build (and push) every variant through BuildKit",
		Long: `build renders each selected variant, cross-compiles the worker for its
platforms, and builds all variants concurrently through one BuildKit client.

With --push, every variant is first pushed by digest; its tags are written
only after EVERY variant built, so a failed matrix never moves a tag such as
latest-gpu (--no-atomic pushes tags as each build finishes). Without --push,
each image is written as an OCI layout under --output.

BuildKit address: --addr, else BUILDKIT_HOST, else the BuildKit of a local
Docker Engine (/var/run/docker.sock), else unix:///run/buildkit/buildkitd.sock.
unix://, tcp:// (with --tls* flags), docker-container://, kube-pod:// and
ssh:// addresses work. Registry credentials come from the Docker config file
($DOCKER_CONFIG/config.json, as 'docker login' writes it).

Caches are a reference, or BuildKit's attributes (type=registry,ref=REF,
mode=min); {image} and {variant} are replaced in the reference, which must
then be a valid image reference, and {variant} also in scope= and name=
(type=gha,scope={variant}: a GitHub Actions cache per variant). Errors
never repeat a flag's value (it may carry a token). A good CI default is
  --cache-from '{image}:cache-{variant}' --cache-to '{image}:cache-{variant}'
(type=registry, mode=max).

A runner mirror that needs credentials (RUNNER_URL must not carry any):
--runner-netrc FILE passes a netrc file as the BuildKit secret runner_netrc,
which never enters the image or its history. Kaniko has no build secrets:
--runner-netrc is refused with --builder kaniko.

Attestations: each variant's attest list (variants.hcl: provenance mode=max
and an SBOM for releases), changed by --attest in bake's vocabulary: an
entry replaces the variant's entry of its type, type=sbom,disabled=true
turns one off. A pushed image with attestations is an index holding the
image and its attestation manifest; its tags point at that index. The
provenance names the variants file's git repository (origin URL without
user-info, or GITHUB_SERVER_URL/GITHUB_REPOSITORY in Actions) and commit,
as buildx's does. Kaniko cannot attest: asking it to is refused before
anything is built.`,
		Example: `  imagegen build                         # OCI layouts under out/oci
  imagegen build --push                  # build all, then tag all
  RELEASE=v1.0.0 imagegen build --push gpu
  imagegen build --dry-run
  imagegen build --push --addr tcp://buildkit:1234 --tlscacert ca.pem --tlscert cert.pem --tlskey key.pem
  imagegen build --push --metadata-file build.json --cache-from '{image}:cache-{variant}' --cache-to '{image}:cache-{variant}'
  RELEASE=v1.0.0 imagegen build --push --attest type=sbom,generator=registry.example/syft-scanner:1
  imagegen build --push --attest type=provenance,mode=max --set 'cpu.compression=zstd'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, mf, bf, args)
		},
	}
	bf.register(cmd)
	return cmd
}

// register declares the build command's flags.
func (bf *buildFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&bf.addr, "addr", "", "BuildKit address (default: $BUILDKIT_HOST, the Docker Engine's BuildKit, or "+buildkit.DefaultSocket+")")
	f.StringVar(&bf.tls.ServerName, "tlsservername", "", "TLS server name for tcp:// addresses")
	f.StringVar(&bf.tls.CACert, "tlscacert", "", "CA certificate for tcp:// addresses")
	f.StringVar(&bf.tls.Cert, "tlscert", "", "client certificate for tcp:// addresses")
	f.StringVar(&bf.tls.Key, "tlskey", "", "client key for tcp:// addresses")
	f.IntVar(&bf.jobs, "jobs", 0, "build at most N variants at once (0: all; not negative)")
	f.StringVar(&bf.progress, "progress", "auto", "progress output: auto, tty, plain, rawjson or quiet")
	f.BoolVar(&bf.push, "push", false, "push the images and write their tags")
	f.BoolVar(&bf.noAtomic, "no-atomic", false, "with --push: tag each variant as soon as it is built")
	f.StringVar(&bf.outDir, "output", "out/oci", "without --push: write OCI layouts to DIR/<variant>")
	f.StringArrayVar(&bf.cacheFrom, "cache-from", nil, "cache to import: REF or type=registry,ref=REF,... ({image}, {variant} are replaced in REF; {variant} also in scope, name); repeatable")
	f.StringArrayVar(&bf.cacheTo, "cache-to", nil, "cache to export, as --cache-from (mode=max by default); repeatable")
	f.StringVar(&bf.metadataFile, "metadata-file", "", "write JSON per variant (digest, tags and what became of each, platforms, seconds, cached steps) to FILE; checked writable before building")
	f.StringVar(&bf.runnerNetrc, "runner-netrc", "", "netrc file for a runner mirror that needs credentials, passed as the BuildKit secret "+runnerNetrcSecret+" (BuildKit only)")
	f.StringArrayVar(&bf.attest, "attest", nil, "attestation in bake's form: type=provenance,mode=max or type=sbom[,generator=IMAGE]; replaces the variant's entry of that type, type=TYPE,disabled=true turns one off; repeatable (BuildKit only)")
	f.BoolVar(&bf.dryRun, "dry-run", false, "show what would be built (platforms, output, layer compression, attestations, tags) and do nothing")
	f.StringArrayVar(&bf.workerBins, "worker-bin", nil, "prebuilt worker binary, PLATFORM=PATH or PATH (platform from its ELF header); default: compile cmd/worker")
	f.StringVar(&bf.workerVersion, "worker-version", "", "version stamped into the worker and the scaler (default: git describe, else dev)")
	f.StringVar(&bf.builder, "builder", "buildkit", "buildkit, or kaniko (inside a container with no Docker daemon, one variant at a time)")
	f.StringVar(&bf.kanikoExec, "kaniko-executor", kaniko.DefaultExecutor, "with --builder kaniko: the executor")
	f.StringArrayVar(&bf.kanikoArgs, "kaniko-arg", nil, "with --builder kaniko: pass an argument to the executor, e.g. --kaniko-arg=--registry-map=index.docker.io=mirror.example (not a flag imagegen sets: --destination, --compression...); repeatable")
	f.StringVar(&bf.kanikoDir, "kaniko-dir", kaniko.DefaultWorkDir, "with --builder kaniko: Kaniko's folder; Kaniko wipes everything else, so imagegen keeps its files here")
	f.BoolVar(&bf.kanikoForce, "kaniko-force", false, "with --builder kaniko: run even outside a container made for Kaniko (it overwrites the root file system)")
}

func runBuild(cmd *cobra.Command, mf *matrixFlags, bf *buildFlags, args []string) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	p, err := bf.plan(stderr, mf, args)
	if err != nil {
		return err
	}
	if bf.dryRun {
		return printDryRun(stdout, p.reqs)
	}
	results, runErr := bf.run(cmd.Context(), stderr, p)
	var me *build.MatrixError
	if runErr != nil && !errors.As(runErr, &me) {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%w\nnothing was built", runErr)}
	}
	printSummary(stdout, results, runErr)
	return bf.finish(results, runErr, tagsAfterAll(p.reqs))
}

// buildPlan is what a build run needs, checked before anything runs.
type buildPlan struct {
	reqs      []*build.Request
	platforms []string          // the platforms the worker is needed for
	scalers   []string          // the platforms the scaler is needed for
	bins      map[string]string // --worker-bin by platform; nil: compile
}

// plan checks the flags, loads and renders the variants, and checks the
// files the run will write or read (a dry run checks them too).
func (bf *buildFlags) plan(stderr io.Writer, mf *matrixFlags, args []string) (*buildPlan, error) {
	cache, err := bf.validate()
	if err != nil {
		return nil, err
	}
	m, err := mf.load(stderr)
	if err != nil {
		return nil, err
	}
	bf.pinAttests(stderr, m.Pins)
	vs, err := selectVariants(m, args)
	if err != nil {
		return nil, err
	}
	if bf.metadataFile != "" {
		if err := checkWritableFile(bf.metadataFile); err != nil {
			return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("--metadata-file %s cannot be written (checked before building): %w", bf.metadataFile, err)}
		}
	}
	p := &buildPlan{}
	if p.reqs, p.platforms, p.scalers, err = bf.requests(vs, cache); err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err}
	}
	if err := build.Check(bf.backend(io.Discard).Capabilities(), p.reqs); err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err}
	}
	addVCS(p.reqs, mf.files)
	if p.bins, err = checkWorkerBins(bf.workerBins, p.platforms); err != nil {
		return nil, err
	}
	return p, nil
}

// finish writes the metadata file and says how the run ended; a failed
// atomic run says that no tag moved unless tagging itself failed.
func (bf *buildFlags) finish(results []*build.Result, runErr error, atomic bool) error {
	if bf.metadataFile != "" {
		if err := writeMetadata(bf.metadataFile, results); err != nil {
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("write --metadata-file %s: %w", bf.metadataFile, err)}
		}
	}
	var me *build.MatrixError
	switch {
	case runErr == nil:
		return nil
	case errors.As(runErr, &me) && !me.Tagging && atomic:
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%v\nno tag was written", runErr)}
	}
	return &ExitError{Code: ExitFailure, Err: runErr}
}

// tagsAfterAll says whether Run writes the tags once every variant built.
func tagsAfterAll(reqs []*build.Request) bool {
	return slices.ContainsFunc(reqs, func(r *build.Request) bool { return r.Output.Kind() == build.PushByDigestKind })
}

// cacheFlags are --cache-from and --cache-to, parsed once.
type cacheFlags struct{ from, to []build.CacheSpec }

// validate checks the flags alone (usage errors) and parses the caches.
func (bf *buildFlags) validate() (*cacheFlags, error) {
	if backends[bf.builder] == nil {
		return nil, usageError("--builder must be %s, not %q", strings.Join(slices.Sorted(maps.Keys(backends)), " or "), clip(bf.builder))
	}
	switch bf.progress {
	case "auto", "tty", "plain", "rawjson", "quiet":
	default:
		return nil, usageError("--progress must be auto, tty, plain, rawjson or quiet, not %q", clip(bf.progress))
	}
	if bf.noAtomic && !bf.push {
		return nil, usageError("--no-atomic only applies with --push")
	}
	if bf.jobs < 0 {
		return nil, usageError("--jobs must be 0 (all at once) or more, not %d", bf.jobs)
	}
	if caps := bf.backend(io.Discard).Capabilities(); bf.runnerNetrc != "" && !caps.Secrets {
		return nil, usageError("--runner-netrc is not supported with --builder %s: %s has no build secrets; build with BuildKit, or use a runner mirror that needs no credentials", bf.builder, caps.Name)
	}
	if err := bf.parseAttest(); err != nil {
		return nil, err
	}
	if err := kaniko.CheckExtraArgs(bf.kanikoArgs); err != nil {
		return nil, usageError("--kaniko-arg: %v", err)
	}
	var c cacheFlags
	var err error
	if c.from, err = parseCacheFlags("cache-from", bf.cacheFrom); err != nil {
		return nil, err
	}
	if c.to, err = parseCacheFlags("cache-to", bf.cacheTo); err != nil {
		return nil, err
	}
	return &c, nil
}

// parseAttest parses --attest; a type given twice is a usage error.
func (bf *buildFlags) parseAttest() error {
	bf.attests = nil
	seen := map[string]bool{}
	for i, s := range bf.attest {
		which := ""
		if len(bf.attest) > 1 {
			which = " (" + ordinal(i+1) + ")"
		}
		a, err := variants.ParseAttestation(s)
		if err != nil {
			return usageError("--attest%s: %v", which, err)
		}
		if seen[a.Type] {
			return usageError("--attest%s: type=%s is given twice", which, a.Type)
		}
		seen[a.Type] = true
		bf.attests = append(bf.attests, a)
	}
	return nil
}

// pinAttests pins the SBOM generator of the --attest entries as the
// variants' own are pinned, with the matrix's pins (none with --no-pins):
// an --attest type=sbom replaces a variant's pinned entry, and would pull
// the scanner by its tag. A generator the pins lack gets a warning, as an
// unpinned base does.
func (bf *buildFlags) pinAttests(stderr io.Writer, pins variants.Pins) {
	if len(pins) == 0 {
		return
	}
	for i, a := range bf.attests {
		var unpinned string
		if bf.attests[i], unpinned = pins.PinAttestation(a); unpinned != "" {
			hint := ""
			if unpinned == variants.DefaultSBOMGenerator {
				hint = " (imagegen --var RELEASE=v0.0.0 pin pins it)"
			}
			fmt.Fprintf(stderr, "warning: --attest type=sbom: pins has no entry for %s: the SBOM runs on what its tag points at now%s\n", unpinned, hint)
		}
	}
}

// parseCacheFlags parses each value; an error names the flag and which of
// its values, never the value (it may carry a token).
func parseCacheFlags(flag string, values []string) ([]build.CacheSpec, error) {
	var out []build.CacheSpec
	for i, v := range values {
		spec, err := build.ParseCacheSpec(v)
		if err != nil {
			which := ""
			if len(values) > 1 {
				which = " (" + ordinal(i+1) + ")"
			}
			return nil, usageError("--%s%s: %v", flag, which, err)
		}
		out = append(out, spec)
	}
	return out, nil
}

// ordinal is 1st, 2nd, 3rd, 4th, ...
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

// requests renders every variant and expands its caches; it also returns
// the platforms the worker and the scaler are needed for.
func (bf *buildFlags) requests(vs []*variants.Variant, cache *cacheFlags) (reqs []*build.Request, workers, scalers []string, err error) {
	secrets, err := bf.secrets()
	if err != nil {
		return nil, nil, nil, err
	}
	reqs = make([]*build.Request, 0, len(vs))
	platforms := map[bool]map[string]bool{false: {}, true: {}}
	namedContexts := bf.backend(io.Discard).Capabilities().NamedContexts
	for _, v := range vs {
		plan, err := render.Variant(v)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, p := range v.Platforms {
			platforms[v.IsScaler()][p] = true
		}
		// Either way the worker (or scaler) comes from prepareWorker: as
		// the named context that replaces its stage, or from the build
		// context of the prepared Dockerfile.
		req := &build.Request{Variant: v, Dockerfile: plan.Prepared, Secrets: secrets,
			Attest: variants.MergeAttestations(v.Attestations(), bf.attests)}
		if namedContexts {
			req.Dockerfile = plan.Dockerfile
			req.NamedContexts = binaryStages(v)
		}
		if req.Output, err = bf.output(v.Name); err != nil {
			return nil, nil, nil, err
		}
		if req.Cache.From, err = expandCache("cache-from", cache.from, v); err != nil {
			return nil, nil, nil, err
		}
		if req.Cache.To, err = expandCache("cache-to", cache.to, v); err != nil {
			return nil, nil, nil, err
		}
		reqs = append(reqs, req)
	}
	return reqs, slices.Sorted(maps.Keys(platforms[false])), slices.Sorted(maps.Keys(platforms[true])), nil
}

// addVCS gives the requests that carry provenance the repository and
// commit of the (first) variants file, as buildx gives BuildKit those of
// the build context: see build.GitVCS.
func addVCS(reqs []*build.Request, files []string) {
	var vcs *build.VCS
	for _, r := range reqs {
		if !slices.ContainsFunc(r.Attest, func(a variants.Attestation) bool { return a.Type == variants.AttestProvenance }) {
			continue
		}
		if vcs == nil && len(files) > 0 {
			v := build.GitVCS(context.Background(), filepath.Dir(files[0]), os.Getenv)
			vcs = &v
		}
		if vcs != nil {
			r.VCS = *vcs
		}
	}
}

// binaryStages are the stages of a variant's Dockerfile a named context
// replaces with imagegen's own binaries: the worker's, or the scaler's.
func binaryStages(v *variants.Variant) map[string]string {
	if v.IsScaler() {
		return map[string]string{render.ScalerStage: "", render.ScalerBuildStage: ""}
	}
	return map[string]string{render.WorkerStage: "", render.WorkerBuildStage: ""}
}

// output is where a variant's image goes: the one place --push,
// --no-atomic and --output are read together.
func (bf *buildFlags) output(variant string) (build.Output, error) {
	switch {
	case bf.push && bf.noAtomic:
		return build.PushTags(), nil
	case bf.push:
		return build.PushByDigest(), nil
	}
	dir, err := filepath.Abs(filepath.Join(bf.outDir, variant))
	if err != nil {
		return build.Output{}, err
	}
	return build.OCILayout(dir)
}

// expandCache fills {image} and {variant} into each spec's reference.
func expandCache(flag string, specs []build.CacheSpec, v *variants.Variant) ([]build.CacheSpec, error) {
	var out []build.CacheSpec
	for _, s := range specs {
		e, err := s.Expand(v.Image, v.Name)
		if err != nil {
			return nil, fmt.Errorf("--%s for variant %s: %w", flag, v.Name, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// secrets reads the build secrets given by flags (the file's content is
// never echoed).
func (bf *buildFlags) secrets() (map[string][]byte, error) {
	if bf.runnerNetrc == "" {
		return nil, nil
	}
	b, err := readSecretFile(bf.runnerNetrc)
	if err != nil {
		return nil, fmt.Errorf("--runner-netrc: %w", err)
	}
	return map[string][]byte{runnerNetrcSecret: b}, nil
}

// maxSecretSize is BuildKit's limit for one secret.
const maxSecretSize = 500 << 10

func readSecretFile(path string) ([]byte, error) {
	f, err := workerbin.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretSize {
		return nil, fmt.Errorf("%s is larger than BuildKit's limit for a secret (500 KiB)", path)
	}
	return b, nil
}

// backends are the --builder values, each made from the flags; stderr
// receives a backend's own output.
var backends = map[string]func(bf *buildFlags, stderr io.Writer) build.Backend{
	"buildkit": func(bf *buildFlags, _ io.Writer) build.Backend {
		return buildkit.Options{Addr: bf.addr, TLS: bf.tls, Progress: bf.progress}
	},
	"kaniko": func(bf *buildFlags, stderr io.Writer) build.Backend {
		if bf.progress == "quiet" {
			stderr = io.Discard
		}
		return kaniko.Options{Executor: bf.kanikoExec, Force: bf.kanikoForce, ExtraArgs: bf.kanikoArgs, WorkDir: bf.kanikoDir, Output: stderr}
	},
}

// backend is the --builder's backend (validate checked the name).
func (bf *buildFlags) backend(stderr io.Writer) build.Backend {
	return backends[bf.builder](bf, stderr)
}

// run opens the backend, puts the worker binaries into the build context
// it reads, and builds; with outputs pushed by digest, the backend's
// registry client writes the tags after all. An error other than a
// *build.MatrixError means nothing was built.
func (bf *buildFlags) run(ctx context.Context, stderr io.Writer, p *buildPlan) ([]*build.Result, error) {
	backend := bf.backend(stderr)
	ctxDir, err := bf.contextDir(backend.Capabilities())
	if err != nil {
		return nil, err
	}
	s, err := backend.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := prepareWorker(ctx, stderr, bf, ctxDir, p.platforms, p.bins); err != nil {
		return nil, err
	}
	if err := prepareScaler(ctx, stderr, bf, ctxDir, p.scalers); err != nil {
		return nil, err
	}
	for _, r := range p.reqs {
		r.ContextDir = ctxDir
		for name := range r.NamedContexts { // the worker stages (requests)
			r.NamedContexts[name] = ctxDir
		}
	}
	opts := build.Options{Jobs: bf.jobs}
	if tagsAfterAll(p.reqs) {
		opts.Tagger = s.Registry()
	}
	fmt.Fprintf(stderr, "imagegen: building %d variant(s) %s\n", len(p.reqs), s)
	return build.Run(ctx, s, p.reqs, opts)
}

// contextDir is the build context's folder (the worker binaries are its
// only files): the backend's own when it has one, else beside --output.
func (bf *buildFlags) contextDir(caps build.Capabilities) (string, error) {
	if caps.ContextDir != "" {
		return caps.ContextDir, nil
	}
	return filepath.Abs(filepath.Join(bf.outDir, "..", "context"))
}

// checkWritableFile makes sure a file can be written where path says, the
// way writeMetadata writes it, before hours of building depend on it. It
// changes nothing on disk (a dry run checks it too).
func checkWritableFile(path string) error {
	through, err := writesThrough(path)
	if err != nil {
		return err
	}
	st, serr := os.Stat(path)
	switch {
	case serr == nil && st.IsDir():
		return errors.New("it is a directory")
	case through && serr == nil:
		// O_NONBLOCK: a FIFO without a reader fails instead of hanging.
		f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		return f.Close()
	case through: // a dangling symlink: the file it names will be created
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		return checkCreatable(target)
	}
	return checkCreatable(path)
}

// checkCreatable checks that a file can be created beside path, in its
// folder or the nearest one that exists (writeMetadata creates the rest).
func checkCreatable(path string) error {
	dir := filepath.Dir(path)
	for {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory", dir)
			}
			break
		}
		parent := filepath.Dir(dir)
		if !os.IsNotExist(err) || parent == dir {
			return err
		}
		dir = parent
	}
	tmp, err := os.CreateTemp(dir, ".imagegen-check-*")
	if err != nil {
		return err
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}

// writesThrough says whether a file is written by opening it (a symlink, a
// pipe, a terminal, /dev/stdout) rather than replaced by a rename, which
// would replace the link or the device with a regular file.
func writesThrough(path string) (bool, error) {
	st, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return st.Mode()&os.ModeSymlink != 0 || !st.Mode().IsRegular(), nil
}

// checkWorkerBins checks the --worker-bin files and that there is one for
// every platform; none means the worker is compiled.
func checkWorkerBins(values []string, platforms []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	bins, err := workerbin.ParseFlags(values)
	if errors.Is(err, workerbin.ErrDuplicatePlatform) {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err}
	}
	for _, p := range platforms {
		if bins[p] == "" {
			return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("no --worker-bin for platform %s", p)}
		}
	}
	return bins, nil
}

// prepareWorker puts the worker binaries into dir: the checked
// --worker-bin files (checked again on the handle copied from), or
// cmd/worker compiled.
func prepareWorker(ctx context.Context, stderr io.Writer, bf *buildFlags, dir string, platforms []string, bins map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if bins != nil {
		return workerbin.Copy(dir, bins)
	}
	if len(platforms) == 0 {
		return nil // only scaler variants
	}
	root, version, err := bf.moduleVersion()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "imagegen: compiling worker %s for %s\n", version, strings.Join(platforms, ", "))
	return workerbin.Compile(ctx, root, dir, platforms, version)
}

// prepareScaler compiles cmd/scaler into dir for the platforms of the
// scaler variants selected, and only then.
func prepareScaler(ctx context.Context, stderr io.Writer, bf *buildFlags, dir string, platforms []string) error {
	if len(platforms) == 0 {
		return nil
	}
	root, version, err := bf.moduleVersion()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "imagegen: compiling scaler %s for %s\n", version, strings.Join(platforms, ", "))
	return workerbin.CompileCommand(ctx, root, dir, platforms, version, "./cmd/scaler", render.ScalerBinary)
}

// moduleVersion is the checkout binaries are compiled from and the
// version they are stamped with (--worker-version, else git describe).
func (bf *buildFlags) moduleVersion() (root, version string, err error) {
	if root, err = workerbin.FindModuleRoot("."); err != nil {
		return "", "", err
	}
	if version = bf.workerVersion; version == "" {
		version = gitVersion(root)
	}
	return root, version, nil
}

func gitVersion(dir string) string {
	out, err := exec.Command("git", "-C", dir, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil || len(out) == 0 {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}

func printDryRun(w io.Writer, reqs []*build.Request) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIANT\tPLATFORMS\tOUTPUT\tCOMPRESSION\tATTEST\tTAGS")
	for _, r := range reqs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Variant.Name, strings.Join(r.Variant.Platforms, ","), r.Output,
			compressionColumn(r.Variant), attestColumn(r.Attest), strings.Join(r.Variant.Tags, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "dry run: nothing was built")
	return nil
}

// attestColumn lists the attestations an image will carry, "-" for none.
func attestColumn(as []variants.Attestation) string {
	if len(as) == 0 {
		return "-"
	}
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return strings.Join(out, " ")
}

func printSummary(w io.Writer, results []*build.Result, runErr error) {
	failed := map[string]string{}
	var me *build.MatrixError
	if errors.As(runErr, &me) {
		for _, f := range me.Failed {
			failed[f.Variant] = f.Err.Error()
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIANT\tDIGEST\tTAGS\tTIME\tCACHED")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs\t%d/%d\n", r.Variant, shortDigest(r.Digest), tagsColumn(r), r.Seconds, r.CachedSteps, r.Steps)
	}
	for _, name := range slices.Sorted(maps.Keys(failed)) {
		msg := failed[name]
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		fmt.Fprintf(tw, "%s\tFAILED\t%s\t\t\n", name, msg)
	}
	tw.Flush()
}

// tagsColumn says where the image went: its OCI folder, or its tags, each
// marked with what became of it unless it moved as asked.
func tagsColumn(r *build.Result) string {
	if r.OCIDir != "" {
		return r.OCIDir
	}
	if len(r.TagResults) == 0 {
		tags := strings.Join(r.Tags, " ")
		if !r.Tagged {
			tags = "(not tagged) " + tags
		}
		return tags
	}
	var parts []string
	for _, tr := range r.TagResults {
		if tr.State == registry.TagMoved {
			parts = append(parts, tr.Tag)
		} else {
			parts = append(parts, tr.Tag+" ("+string(tr.State)+")")
		}
	}
	return strings.Join(parts, " ")
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// writeMetadata writes the results as JSON: through path when it is a
// symlink, a pipe or a device (appending to an fd alias such as
// /dev/stdout redirected to a file, so what was printed stays), else to a
// temporary file renamed into place.
func writeMetadata(path string, results []*build.Result) error {
	m := map[string]*build.Result{}
	for _, r := range results {
		m[r.Variant] = r
	}
	b, err := json.MarshalIndent(map[string]any{"variants": m}, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	through, err := writesThrough(path)
	if err != nil {
		return err
	}
	if through {
		return writeThrough(path, b)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

func writeThrough(path string, b []byte) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if abs, err := filepath.Abs(path); err == nil && (strings.HasPrefix(abs, "/dev/") || strings.HasPrefix(abs, "/proc/")) {
		flags = os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
