// Package build runs the builds of a matrix: a Backend (BuildKit, Kaniko, or
// a fake in tests) states its Capabilities and opens a Builder that builds
// each variant to its Output (output.go), Run caps how many run at once, and
// tags are published only after every variant built, so a failed matrix
// never moves a tag such as latest-gpu.
package build

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// Request is one variant to build.
type Request struct {
	Variant    *variants.Variant
	Dockerfile []byte
	// ContextDir is the build context (the worker binaries); shared by all
	// requests of a run.
	ContextDir string
	// NamedContexts replace stages of the Dockerfile (or images it names)
	// with local folders, by stage name: imagegen's worker binaries in
	// place of the stage that compiles the worker. Backends with
	// Capabilities.NamedContexts only; Run refuses them otherwise.
	NamedContexts map[string]string
	Output        Output
	Cache         Cache
	// Secrets are build secrets by id, for RUN --mount=type=secret (BuildKit
	// only): never build arguments, so never in the image or its history.
	Secrets map[string][]byte
	// Attest are the attestations the image carries (the variant's, with
	// --attest applied, none disabled). Backends with
	// Capabilities.Attestations only; Run refuses them otherwise.
	Attest []variants.Attestation
	// VCS is where the build's sources come from, for the provenance
	// (BuildKit's vcs:source and vcs:revision); zero when unknown.
	VCS VCS
}

// Cache lists the caches to import from and export to, already expanded
// for the request's variant.
type Cache struct {
	From []CacheSpec
	To   []CacheSpec
}

// Result is what a successful build produced.
type Result struct {
	Variant   string        `json:"-"`
	Digest    string        `json:"digest"`
	Image     string        `json:"image"`
	Tags      []string      `json:"tags"`
	Platforms []string      `json:"platforms"`
	Duration  time.Duration `json:"-"`
	Seconds   float64       `json:"seconds"`
	// Steps and CachedSteps count the build's vertices, and those that came
	// from cache.
	Steps       int    `json:"steps"`
	CachedSteps int    `json:"cached_steps"`
	OCIDir      string `json:"oci_dir,omitempty"`
	// Tagged says every tag points at Digest.
	Tagged bool `json:"tagged"`
	// TagResults, after an atomic tagging pass, say what became of each
	// tag: moved, unchanged, not written, restored, deleted, not restored.
	TagResults []registry.TagResult `json:"tag_results,omitempty"`
}

// Builder builds one variant.
type Builder interface {
	Build(ctx context.Context, req *Request) (*Result, error)
	// Capabilities say what the backend can do and needs; Run honours
	// them.
	Capabilities() Capabilities
}

// Capabilities are what a backend can do and what it needs, known before
// it is opened (a dry run checks the flags against them).
type Capabilities struct {
	// Name names the backend in messages: BuildKit, Kaniko.
	Name string
	// MaxJobs caps concurrent builds whatever Options.Jobs says; 0 means
	// no cap (Kaniko: 1, it owns the root file system).
	MaxJobs int
	// Secrets says whether the backend passes build secrets
	// (Request.Secrets); Run refuses them otherwise.
	Secrets bool
	// NamedContexts says whether the backend can replace a Dockerfile
	// stage with a folder (Request.NamedContexts; BuildKit can, Kaniko
	// cannot).
	NamedContexts bool
	// ContextDir, when set, is the only folder the backend reads the build
	// context from (Kaniko: inside its own folder, which survives its
	// wiping of the file system); empty means any folder.
	ContextDir string
	// Attestations says whether the backend attaches attestations
	// (Request.Attest: provenance, SBOM); Run refuses them otherwise.
	Attestations bool
	// Check, when set, says why the backend cannot build a request (a
	// layer compression it lacks); Run asks it about every request before
	// building any.
	Check func(*Request) error
}

// Backend is a build backend before it is opened.
type Backend interface {
	Capabilities() Capabilities
	// Open connects to or prepares the backend.
	Open(ctx context.Context) (Session, error)
}

// Session is an opened backend.
type Session interface {
	Builder
	// Registry is the client that publishes beside the builder (tags after
	// an atomic run): its credentials are the ones the builder uses.
	Registry() *registry.Client
	// String says what builds, for people ("through unix://...").
	String() string
	// Close ends the session (and its progress display).
	Close() error
}

// Tagger writes the tags of images already pushed by digest
// (registry.Client).
type Tagger interface {
	// CheckWritable fails unless the repository of every reference is
	// reachable and writable.
	CheckWritable(ctx context.Context, refs []string) error
	// TagAll writes every target's tags, all or nothing, and says what
	// became of each tag.
	TagAll(ctx context.Context, targets []registry.Target) ([][]registry.TagResult, error)
}

// Options control Run.
type Options struct {
	// Jobs caps concurrent builds; 0 or less means one per variant. The
	// builder's MaxJobs caps it further.
	Jobs int
	// Tagger writes tags after every build succeeded (atomic mode); every
	// repository is checked writable before the builds start. Nil means
	// the builder wrote them (or nothing is pushed).
	Tagger Tagger
}

// VariantError is the failure of one variant.
type VariantError struct {
	Variant string
	Err     error
}

func (e *VariantError) Error() string { return fmt.Sprintf("variant %s: %v", e.Variant, e.Err) }
func (e *VariantError) Unwrap() error { return e.Err }

// MatrixError lists every variant that failed.
type MatrixError struct {
	Failed []*VariantError
	// Tagging is true when the builds succeeded and writing tags failed;
	// TagErr says how, and each Result's TagResults what moved.
	Tagging bool
	TagErr  error
}

func (e *MatrixError) Error() string {
	if e.Tagging {
		return fmt.Sprintf("every variant built, but tagging failed: %v", e.TagErr)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "failed to build %d variant(s):", len(e.Failed))
	for _, f := range e.Failed {
		fmt.Fprintf(&b, "\n  %s", f.Error())
	}
	return b.String()
}

// Run builds every request, at most opts.Jobs at a time. Every variant runs
// to its end even when another fails, so one run reports every failure.
// With a Tagger, every repository is checked writable first, and tags are
// written only once all builds succeeded, all or nothing; on any failure no
// tag moves. Results come back sorted by variant name, with the successful
// ones even on failure.
func Run(ctx context.Context, b Builder, reqs []*Request, opts Options) ([]*Result, error) {
	caps := b.Capabilities()
	if err := Check(caps, reqs); err != nil {
		return nil, err
	}
	if caps.MaxJobs > 0 && (opts.Jobs <= 0 || opts.Jobs > caps.MaxJobs) {
		opts.Jobs = caps.MaxJobs
	}
	if opts.Tagger != nil {
		if err := opts.Tagger.CheckWritable(ctx, targetRefs(reqs)); err != nil {
			return nil, fmt.Errorf("before building: %w", err)
		}
	}
	results, failed := buildAll(ctx, b, reqs, opts)
	if len(failed) > 0 {
		return results, &MatrixError{Failed: failed}
	}
	if opts.Tagger == nil {
		return results, nil
	}
	return results, tagAll(ctx, opts.Tagger, results)
}

// Check refuses, before anything is built (Run calls it; a dry run may),
// a request without an output, with secrets, named contexts or
// attestations the backend cannot pass, or one the backend's own check
// refuses.
func Check(caps Capabilities, reqs []*Request) error {
	for _, r := range reqs {
		if r.Output.Kind() == 0 {
			return fmt.Errorf("variant %s has no output", r.Variant.Name)
		}
		if len(r.Secrets) > 0 && !caps.Secrets {
			return fmt.Errorf("variant %s: %s has no build secrets", r.Variant.Name, caps.Name)
		}
		if len(r.NamedContexts) > 0 && !caps.NamedContexts {
			return fmt.Errorf("variant %s: %s has no named contexts", r.Variant.Name, caps.Name)
		}
		if len(r.Attest) > 0 && !caps.Attestations {
			return fmt.Errorf("variant %s: %s cannot attach attestations (%s); build with BuildKit, or turn them off with %s",
				r.Variant.Name, caps.Name, attestTypes(r.Attest), disableFlags(r.Attest))
		}
		if caps.Check != nil {
			if err := caps.Check(r); err != nil {
				return fmt.Errorf("variant %s: %w", r.Variant.Name, err)
			}
		}
	}
	return nil
}

func attestTypes(as []variants.Attestation) string {
	types := make([]string, len(as))
	for i, a := range as {
		types[i] = a.Type
	}
	return strings.Join(types, ", ")
}

// disableFlags are the --attest flags that turn off every attestation of as.
func disableFlags(as []variants.Attestation) string {
	flags := make([]string, len(as))
	for i, a := range as {
		flags[i] = "--attest type=" + a.Type + ",disabled=true"
	}
	return strings.Join(flags, " ")
}

// targetRefs lists every repository a run writes to: images and tags.
func targetRefs(reqs []*Request) []string {
	var refs []string
	for _, r := range reqs {
		refs = append(refs, r.Variant.Image)
		refs = append(refs, r.Variant.Tags...)
	}
	return refs
}

func buildAll(ctx context.Context, b Builder, reqs []*Request, opts Options) ([]*Result, []*VariantError) {
	jobs := opts.Jobs
	if jobs <= 0 || jobs > len(reqs) {
		jobs = len(reqs)
	}
	sem := make(chan struct{}, max(jobs, 1))
	var (
		mu      sync.Mutex
		results []*Result
		failed  []*VariantError
		wg      sync.WaitGroup
	)
	for _, req := range reqs {
		wg.Add(1)
		go func(req *Request) {
			defer wg.Done()
			name := req.Variant.Name
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				mu.Lock()
				failed = append(failed, &VariantError{name, ctx.Err()})
				mu.Unlock()
				return
			}
			defer func() { <-sem }()
			res, err := buildOne(ctx, b, req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, &VariantError{name, err})
				return
			}
			results = append(results, res)
		}(req)
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].Variant < results[j].Variant })
	sort.Slice(failed, func(i, j int) bool { return failed[i].Variant < failed[j].Variant })
	return results, failed
}

// buildOne runs one build; a panic in the builder fails this variant (with
// its stack) instead of crashing the whole run.
func buildOne(ctx context.Context, b Builder, req *Request) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("internal error (a bug in imagegen): panic: %v\n%s", r, debug.Stack())
		}
	}()
	start := time.Now()
	res, err = b.Build(ctx, req)
	if err == nil && res == nil {
		err = errors.New("builder returned no result")
	}
	if res != nil {
		res.Variant = req.Variant.Name
		if res.Duration == 0 {
			res.Duration = time.Since(start)
		}
		res.Seconds = float64(res.Duration.Milliseconds()) / 1000
		if res.Image == "" {
			res.Image = req.Variant.Image
		}
		if res.Platforms == nil {
			res.Platforms = req.Variant.Platforms
		}
		res.Tags = req.Variant.Tags
		res.Tagged = req.Output.Kind() == PushTagsKind
		res.OCIDir = req.Output.Dir()
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// tagAll writes every result's tags in one pass and records what moved.
func tagAll(ctx context.Context, t Tagger, results []*Result) error {
	targets := make([]registry.Target, len(results))
	for i, r := range results {
		targets[i] = registry.Target{Image: r.Image, Digest: r.Digest, Tags: r.Tags}
	}
	tagResults, err := t.TagAll(ctx, targets)
	for i, r := range results {
		if i < len(tagResults) {
			r.TagResults = tagResults[i]
		}
		r.Tagged = len(r.TagResults) == len(r.Tags)
		for _, tr := range r.TagResults {
			r.Tagged = r.Tagged && tr.Kept()
		}
	}
	if err != nil {
		return &MatrixError{Tagging: true, TagErr: err}
	}
	return nil
}
