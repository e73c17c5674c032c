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
	"text/tabwriter"

	"github.com/moby/buildkit/util/progress/progresswriter"
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
}

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

Cache references may use {image} and {variant}; a good CI default is
  --cache-from '{image}:cache-{variant}' --cache-to '{image}:cache-{variant}'
(type=registry, mode=max).`,
		Example: `  imagegen build                         # OCI layouts under out/oci
  imagegen build --push                  # build all, then tag all
  RELEASE=v1.0.0 imagegen build --push gpu
  imagegen build --dry-run
  imagegen build --push --addr tcp://buildkit:1234 --tlscacert ca.pem --tlscert cert.pem --tlskey key.pem
  imagegen build --push --metadata-file build.json --cache-from '{image}:cache-{variant}' --cache-to '{image}:cache-{variant}'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, mf, bf, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&bf.addr, "addr", "", "BuildKit address (default: $BUILDKIT_HOST, the Docker Engine's BuildKit, or "+buildkit.DefaultSocket+")")
	f.StringVar(&bf.tls.ServerName, "tlsservername", "", "TLS server name for tcp:// addresses")
	f.StringVar(&bf.tls.CACert, "tlscacert", "", "CA certificate for tcp:// addresses")
	f.StringVar(&bf.tls.Cert, "tlscert", "", "client certificate for tcp:// addresses")
	f.StringVar(&bf.tls.Key, "tlskey", "", "client key for tcp:// addresses")
	f.IntVar(&bf.jobs, "jobs", 0, "build at most N variants at once (0: all)")
	f.StringVar(&bf.progress, "progress", "auto", "progress output: auto, tty, plain, rawjson or quiet")
	f.BoolVar(&bf.push, "push", false, "push the images and write their tags")
	f.BoolVar(&bf.noAtomic, "no-atomic", false, "with --push: tag each variant as soon as it is built")
	f.StringVar(&bf.outDir, "output", "out/oci", "without --push: write OCI layouts to DIR/<variant>")
	f.StringArrayVar(&bf.cacheFrom, "cache-from", nil, "registry cache to import ({image}, {variant} are replaced); repeatable")
	f.StringArrayVar(&bf.cacheTo, "cache-to", nil, "registry cache to export (mode=max by default); repeatable")
	f.StringVar(&bf.metadataFile, "metadata-file", "", "write JSON per variant (digest, tags, platforms, seconds, cached steps) to FILE")
	f.BoolVar(&bf.dryRun, "dry-run", false, "show what would be built, with which tags, and do nothing")
	f.StringArrayVar(&bf.workerBins, "worker-bin", nil, "prebuilt worker binary, PLATFORM=PATH or PATH (platform from its ELF header); default: compile cmd/worker")
	f.StringVar(&bf.workerVersion, "worker-version", "", "version stamped into the worker (default: git describe, else dev)")
	f.StringVar(&bf.builder, "builder", "buildkit", "buildkit, or kaniko (inside a container with no Docker daemon, one variant at a time)")
	f.StringVar(&bf.kanikoExec, "kaniko-executor", kaniko.DefaultExecutor, "with --builder kaniko: the executor")
	f.StringArrayVar(&bf.kanikoArgs, "kaniko-arg", nil, "with --builder kaniko: pass an argument to the executor, e.g. --kaniko-arg=--registry-map=index.docker.io=mirror.example; repeatable")
	f.StringVar(&bf.kanikoDir, "kaniko-dir", kaniko.DefaultWorkDir, "with --builder kaniko: Kaniko's folder; Kaniko wipes everything else, so imagegen keeps its files here")
	f.BoolVar(&bf.kanikoForce, "kaniko-force", false, "with --builder kaniko: run even outside a container made for Kaniko (it overwrites the root file system)")
	return cmd
}

func runBuild(cmd *cobra.Command, mf *matrixFlags, bf *buildFlags, args []string) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if bf.builder != "buildkit" && bf.builder != "kaniko" {
		return usageError("--builder must be buildkit or kaniko, not %q", bf.builder)
	}
	switch bf.progress {
	case "auto", "tty", "plain", "rawjson", "quiet":
	default:
		return usageError("--progress must be auto, tty, plain, rawjson or quiet, not %q", bf.progress)
	}
	if bf.noAtomic && !bf.push {
		return usageError("--no-atomic only applies with --push")
	}
	m, err := mf.load(stderr)
	if err != nil {
		return err
	}
	vs, err := selectVariants(m, args)
	if err != nil {
		return err
	}
	outDir, err := filepath.Abs(bf.outDir)
	if err != nil {
		return err
	}
	reqs := make([]*build.Request, 0, len(vs))
	platforms := map[string]bool{}
	for _, v := range vs {
		plan, err := render.Variant(v)
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
		for _, p := range v.Platforms {
			platforms[p] = true
		}
		req := &build.Request{
			Variant:    v,
			Dockerfile: plan.Dockerfile,
			Output:     build.Output{Push: bf.push, ByDigest: bf.push && !bf.noAtomic},
			Cache:      build.Cache{From: expandCache(bf.cacheFrom, v), To: expandCache(bf.cacheTo, v)},
		}
		if !bf.push {
			req.Output.OCIDir = filepath.Join(outDir, v.Name)
		}
		reqs = append(reqs, req)
	}
	if bf.dryRun {
		return printDryRun(stdout, reqs, bf)
	}

	var kb *kaniko.Builder
	if bf.builder == "kaniko" {
		var out io.Writer = stderr
		if bf.progress == "quiet" {
			out = io.Discard
		}
		kb, err = kaniko.New(kaniko.Options{Executor: bf.kanikoExec, Force: bf.kanikoForce, ExtraArgs: bf.kanikoArgs, WorkDir: bf.kanikoDir, Output: out})
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
	}

	// The worker binaries: the only build context files.
	ctxDir := filepath.Join(outDir, "..", "context")
	if kb != nil {
		ctxDir = kb.ContextDir()
	}
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	if err := prepareWorker(ctx, stderr, bf, ctxDir, slices.Sorted(maps.Keys(platforms))); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	for _, r := range reqs {
		r.ContextDir = ctxDir
	}

	opts := build.Options{Jobs: bf.jobs}
	if bf.push && !bf.noAtomic {
		opts.Tagger = &registry.Client{}
	}
	var results []*build.Result
	var runErr error
	if kb != nil {
		opts.Jobs = 1
		fmt.Fprintf(stderr, "imagegen: building %d variant(s) with Kaniko, one at a time (it owns the root file system; --cleanup after each)\n", len(reqs))
		results, runErr = build.Run(ctx, kb, reqs, opts)
	} else {
		var pw progresswriter.Writer
		if bf.progress != "quiet" {
			pw, err = progresswriter.NewPrinter(context.WithoutCancel(ctx), os.Stderr, bf.progress)
			if err != nil {
				return &ExitError{Code: ExitFailure, Err: err}
			}
		}
		b, err := buildkit.New(ctx, buildkit.Options{Addr: bf.addr, TLS: bf.tls, Progress: pw})
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
		defer b.Close()
		fmt.Fprintf(stderr, "imagegen: building %d variant(s) through %s\n", len(reqs), b.Addr())
		results, runErr = build.Run(ctx, b, reqs, opts)
		if pw != nil && b.Started() > 0 {
			<-pw.Done()
		}
	}
	printSummary(stdout, results, runErr)
	if bf.metadataFile != "" {
		if err := writeMetadata(bf.metadataFile, results); err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
	}
	if runErr != nil {
		var me *build.MatrixError
		if errors.As(runErr, &me) && !me.Tagging && bf.push && !bf.noAtomic {
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%v\nno tag was written", runErr)}
		}
		return &ExitError{Code: ExitFailure, Err: runErr}
	}
	return nil
}

func expandCache(refs []string, v *variants.Variant) []string {
	var out []string
	for _, r := range refs {
		r = strings.ReplaceAll(r, "{image}", v.Image)
		out = append(out, strings.ReplaceAll(r, "{variant}", v.Name))
	}
	return out
}

func prepareWorker(ctx context.Context, stderr io.Writer, bf *buildFlags, dir string, platforms []string) error {
	if len(bf.workerBins) > 0 {
		bins, err := workerbin.ParseFlags(bf.workerBins)
		if err != nil {
			return err
		}
		for _, p := range platforms {
			if bins[p] == "" {
				return fmt.Errorf("no --worker-bin for platform %s", p)
			}
		}
		return workerbin.Copy(dir, bins)
	}
	root, err := workerbin.FindModuleRoot(".")
	if err != nil {
		return err
	}
	version := bf.workerVersion
	if version == "" {
		version = gitVersion(root)
	}
	fmt.Fprintf(stderr, "imagegen: compiling worker %s for %s\n", version, strings.Join(platforms, ", "))
	return workerbin.Compile(ctx, root, dir, platforms, version)
}

func gitVersion(dir string) string {
	out, err := exec.Command("git", "-C", dir, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil || len(out) == 0 {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}

func printDryRun(w io.Writer, reqs []*build.Request, bf *buildFlags) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIANT\tPLATFORMS\tOUTPUT\tTAGS")
	for _, r := range reqs {
		out := r.Output.OCIDir
		switch {
		case bf.push && bf.noAtomic:
			out = "push (tags at once)"
		case bf.push:
			out = "push by digest, tags after all"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Variant.Name, strings.Join(r.Variant.Platforms, ","), out, strings.Join(r.Variant.Tags, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "dry run: nothing was built")
	return nil
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
		tags := strings.Join(r.Tags, " ")
		if !r.Tagged && r.OCIDir == "" {
			tags = "(not tagged) " + tags
		}
		if r.OCIDir != "" {
			tags = r.OCIDir
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs\t%d/%d\n", r.Variant, shortDigest(r.Digest), tags, r.Seconds, r.CachedSteps, r.Steps)
	}
	for _, name := range slices.Sorted(maps.Keys(failed)) {
		if me != nil && me.Tagging {
			continue
		}
		msg := failed[name]
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		fmt.Fprintf(tw, "%s\tFAILED\t%s\t\t\n", name, msg)
	}
	tw.Flush()
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func writeMetadata(path string, results []*build.Result) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	m := map[string]*build.Result{}
	for _, r := range results {
		m[r.Variant] = r
	}
	b, err := json.MarshalIndent(map[string]any{"variants": m}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}
