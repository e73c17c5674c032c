// Package build runs the builds of a matrix: a Builder (BuildKit, Kaniko, or
// a fake in tests) builds each variant, Run caps how many run at once, and
// tags are published only after every variant built, so a failed matrix
// never moves a tag such as latest-gpu.
package build

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// Request is one variant to build.
type Request struct {
	Variant    *variants.Variant
	Dockerfile []byte
	// ContextDir is the build context (the worker binaries); shared by all
	// requests of a run.
	ContextDir string
	Output     Output
	Cache      Cache
}

// Output says where the image goes.
type Output struct {
	// Push sends the image to Variant.Image.
	Push bool
	// ByDigest pushes without tags (the tags come later, from Run); with
	// Push and !ByDigest the builder pushes every tag itself.
	ByDigest bool
	// OCIDir, when not pushing, receives the image as an OCI layout.
	OCIDir string
}

// Cache lists registry cache references to import from and export to.
type Cache struct {
	From []string
	To   []string
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
	Tagged      bool   `json:"tagged"`
}

// Builder builds one variant.
type Builder interface {
	Build(ctx context.Context, req *Request) (*Result, error)
}

// Tagger points tags at an image already pushed by digest.
type Tagger interface {
	Tag(ctx context.Context, image, digest string, tags []string) error
}

// Options control Run.
type Options struct {
	// Jobs caps concurrent builds; 0 or less means one per variant.
	Jobs int
	// Tagger writes tags after every build succeeded (atomic mode). Nil
	// means the builder wrote them (or nothing is pushed).
	Tagger Tagger
	// OnStart and OnDone, when set, are told about each build.
	OnStart func(variant string)
	OnDone  func(variant string, res *Result, err error)
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
	// Tagging is true when the builds succeeded and writing tags failed.
	Tagging bool
}

func (e *MatrixError) Error() string {
	var b strings.Builder
	what := "failed to build"
	if e.Tagging {
		what = "built, but tagging failed for"
	}
	fmt.Fprintf(&b, "%s %d variant(s):", what, len(e.Failed))
	for _, f := range e.Failed {
		fmt.Fprintf(&b, "\n  %s", f.Error())
	}
	return b.String()
}

// Run builds every request, at most opts.Jobs at a time. Every variant runs
// to its end even when another fails, so one run reports every failure.
// With a Tagger, tags are written only once all builds succeeded; on any
// failure no tag is written. Results come back sorted by variant name, with
// the successful ones even on failure.
func Run(ctx context.Context, b Builder, reqs []*Request, opts Options) ([]*Result, error) {
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
			if opts.OnStart != nil {
				opts.OnStart(name)
			}
			start := time.Now()
			res, err := b.Build(ctx, req)
			if err == nil && res == nil {
				err = errors.New("builder returned no result")
			}
			if res != nil {
				res.Variant = name
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
				res.Tagged = req.Output.Push && !req.Output.ByDigest
			}
			if opts.OnDone != nil {
				opts.OnDone(name, res, err)
			}
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
	if len(failed) > 0 {
		return results, &MatrixError{Failed: failed}
	}
	if opts.Tagger == nil {
		return results, nil
	}
	var tagFailed []*VariantError
	for _, r := range results {
		if err := opts.Tagger.Tag(ctx, r.Image, r.Digest, r.Tags); err != nil {
			tagFailed = append(tagFailed, &VariantError{r.Variant, err})
			continue
		}
		r.Tagged = true
	}
	if len(tagFailed) > 0 {
		return results, &MatrixError{Failed: tagFailed, Tagging: true}
	}
	return results, nil
}
