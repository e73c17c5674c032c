// Package render turns a resolved variant into its Dockerfile. The output
// depends only on the variant: identical input gives identical bytes, so
// rendered files can be committed and checked in CI.
package render

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"github.com/runpod-workers/worker-github_runner/internal/platform"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
	"github.com/runpod-workers/worker-github_runner/templates"
)

// ToolCache is the images' RUNNER_TOOL_CACHE and AGENT_TOOLSDIRECTORY,
// owned by the runner user, where actions/setup-* install tools (GitHub's
// hosted runners use the same path).
const ToolCache = "/opt/hostedtoolcache"

// TemplatePackages are installed by every image whatever the variant says:
// the template itself needs them to download and verify the runner.
var TemplatePackages = []string{"ca-certificates", "curl"}

var tmpl = template.Must(template.New("Dockerfile").Funcs(template.FuncMap{
	"quote":     quote,
	"step":      func(s string) string { return strings.TrimRight(s, "\n") },
	"stepsEnd":  func() string { return StepsEnd },
	"toolCache": func() string { return ToolCache },
	"sub":       func(a, b int) int { return a - b },
}).Parse(templates.Dockerfile + templates.Scaler))

// Plan is what a build of one variant needs.
type Plan struct {
	// Dockerfile builds from the repository root on its own: a stage
	// compiles the worker (imagegen replaces that stage, named
	// WorkerStage, with a named context holding its own binaries).
	Dockerfile []byte
	// Prepared is the same image for a build context that already holds
	// the worker binaries (worker-linux-<arch> at its root), for backends
	// without named contexts (Kaniko): no worker stage, no Go toolchain.
	Prepared []byte
}

// WorkerStage is the stage of every Dockerfile that holds the worker
// binaries (worker-linux-<arch> at its root); a BuildKit named context of
// this name replaces it.
const WorkerStage = "worker"

// WorkerBuildStage compiles the worker for WorkerStage. A build that
// replaces WorkerStage replaces this one too (with the same folder), so
// BuildKit never looks up the Go image it would start from.
const WorkerBuildStage = "worker-build"

// ScalerStage and ScalerBuildStage are the scaler's counterparts of
// WorkerStage and WorkerBuildStage in a scaler variant's Dockerfile: the
// named context replacing them holds scaler-linux-<arch> (ScalerBinary).
const (
	ScalerStage      = "scaler"
	ScalerBuildStage = "scaler-build"
)

// ScalerBinary is the scaler's file name in the build context for a
// platform (linux/amd64 -> scaler-linux-amd64).
func ScalerBinary(platformName string) string {
	return "scaler-" + strings.ReplaceAll(platformName, "/", "-")
}

// FileName is the rendered Dockerfile's name for a variant.
func FileName(v *variants.Variant) string { return v.Name + ".Dockerfile" }

// RootFileName is the repository root's Dockerfile, every variant in one
// file (Root).
const RootFileName = "Dockerfile"

type label struct{ Key, Value string }

type sum struct{ Docker, RunnerArch, Arg, Sum string }

type data struct {
	V          *variants.Variant
	SourceFile string
	// WorkerBinary is the worker's file name in the build context, as the
	// Dockerfile names it (platform.DockerfileWorkerBinary).
	WorkerBinary string
	// ScalerBinary is the scaler's, for a scaler variant.
	ScalerBinary string
	// Prepared leaves out the worker stage: the binaries are in the
	// build context.
	Prepared bool
	Packages []string
	// ExtraPackages, for a variant built on another, are the packages
	// that one lacks.
	ExtraPackages []string
	// Chain holds the variants this one is built on, the root first.
	Chain  []*data
	Sums   []sum
	Args   []label
	Labels []label
}

// Variant renders one variant, both ways (see Plan).
func Variant(v *variants.Variant) (*Plan, error) {
	d, err := variantData(v)
	if err != nil {
		return nil, err
	}
	t, name, err := variantTemplate(v)
	if err != nil {
		return nil, err
	}
	self, err := executeIn(t, name, d)
	if err != nil {
		return nil, fmt.Errorf("render variant %s: %w", v.Name, err)
	}
	d.Prepared = true
	prepared, err := executeIn(t, name, d)
	if err != nil {
		return nil, fmt.Errorf("render variant %s: %w", v.Name, err)
	}
	return &Plan{Dockerfile: self, Prepared: prepared}, nil
}

// DefaultBuildType is the root Dockerfile's default BUILD_TYPE when a
// variant has that name (else the first variant's name).
const DefaultBuildType = "gpu"

type rootData struct {
	SourceFile string
	Default    string
	Names      string
	First      *data
	Variants   []*data
}

// Root renders the repository root's Dockerfile: one stage per variant
// (variant-<name>) and BUILD_TYPE, a variant name, choosing the image, so
// `docker build .` and `docker build --build-arg BUILD_TYPE=cpu .` work
// from the repository root. Every variant shares the Kaniko and Go images
// (the kaniko and golang blocks are global).
func Root(vs []*variants.Variant) ([]byte, error) {
	if len(vs) == 0 {
		return nil, fmt.Errorf("render %s: no variants", RootFileName)
	}
	r := rootData{SourceFile: sourceFile(vs[0].Source)}
	names := make([]string, 0, len(vs))
	for _, v := range parentsFirst(vs) {
		if ownTemplate(v) || v.IsScaler() {
			continue // in its own Dockerfile only
		}
		if r.Default == "" {
			r.Default = v.Name
		}
		if v.Parent != nil && !slices.Contains(vs, v.Parent) {
			return nil, fmt.Errorf("render %s: variant %s is built on %s, which is not rendered with it", RootFileName, v.Name, v.Parent.Name)
		}
		if v.Kaniko != vs[0].Kaniko || v.Golang != vs[0].Golang {
			return nil, fmt.Errorf("render %s: variants %s and %s use different Kaniko or Go images; the root Dockerfile needs one of each", RootFileName, vs[0].Name, v.Name)
		}
		d, err := variantData(v)
		if err != nil {
			return nil, err
		}
		r.Variants = append(r.Variants, d)
		names = append(names, v.Name)
		if v.Name == DefaultBuildType {
			r.Default = v.Name
		}
	}
	if len(r.Variants) == 0 {
		return nil, fmt.Errorf("render %s: no worker variant with the built-in template (the scaler and variants with a template of their own have their own Dockerfiles only)", RootFileName)
	}
	r.First, r.Names = r.Variants[0], strings.Join(names, ", ")
	b, err := execute("Root", r)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", RootFileName, err)
	}
	return b, nil
}

// variantTemplate is the template a variant renders with: the built-in
// one, or the file its template field names, parsed next to the
// built-in one so it can use its parts ({{template "layers" .}},
// "workerLayer", "worker", "steps", "labels", "variant").
func variantTemplate(v *variants.Variant) (*template.Template, string, error) {
	for _, p := range v.Chain()[:len(v.Chain())-1] {
		if p.Template != "" {
			return nil, "", fmt.Errorf("render variant %s: it is built on variant %s, which has a template of its own; base = variant.NAME needs the built-in template", v.Name, p.Name)
		}
	}
	if v.Template == "" && v.IsScaler() {
		return tmpl, "Scaler", nil
	}
	if v.Template == "" {
		return tmpl, "Dockerfile", nil
	}
	src, err := os.ReadFile(v.Template)
	if err != nil {
		return nil, "", fmt.Errorf("render variant %s: template: %w", v.Name, err)
	}
	t, err := template.Must(tmpl.Clone()).New("custom").Parse(string(src))
	if err != nil {
		return nil, "", fmt.Errorf("render variant %s: template %s: %w", v.Name, variants.EscapeControl(v.Template), err)
	}
	return t, "custom", nil
}

// ownTemplate says whether a variant, or one it is built on, renders with
// a template of its own.
func ownTemplate(v *variants.Variant) bool {
	for _, p := range v.Chain() {
		if p.Template != "" {
			return true
		}
	}
	return false
}

// parentsFirst orders variants so that every variant built on another
// comes after it (a stage can only start from an earlier one), keeping
// the order otherwise.
func parentsFirst(vs []*variants.Variant) []*variants.Variant {
	out := slices.Clone(vs)
	slices.SortStableFunc(out, func(a, b *variants.Variant) int { return len(a.Chain()) - len(b.Chain()) })
	return out
}

func execute(name string, d any) ([]byte, error) { return executeIn(tmpl, name, d) }

func executeIn(t *template.Template, name string, d any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// variantData is what the templates need of one variant, with the chain
// of variants it is built on.
func variantData(v *variants.Variant) (*data, error) {
	chain := v.Chain()
	var ds []*data
	for _, cv := range chain {
		d, err := oneVariantData(cv)
		if err != nil {
			return nil, err
		}
		if n := len(ds); n > 0 {
			d.ExtraPackages = without(d.Packages, ds[n-1].Packages)
		}
		ds = append(ds, d)
	}
	d := ds[len(ds)-1]
	d.Chain = ds[:len(ds)-1]
	return d, nil
}

// without is the items of a that b lacks.
func without(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// oneVariantData is what the templates need of one variant on its own.
func oneVariantData(v *variants.Variant) (*data, error) {
	d := &data{V: v, SourceFile: sourceFile(v.Source), WorkerBinary: platform.DockerfileWorkerBinary(), ScalerBinary: ScalerBinary("linux/${TARGETARCH}")}
	for _, k := range slices.Sorted(maps.Keys(v.Args)) {
		d.Args = append(d.Args, label{k, v.Args[k]})
	}
	d.Labels = labels(v)
	if v.IsScaler() {
		return d, nil // no packages, no runner
	}
	d.Packages = slices.Compact(slices.Sorted(slices.Values(slices.Concat(TemplatePackages, v.RunnerPackages, v.Packages))))
	for _, name := range v.Platforms {
		p, ok := platform.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("render variant %s: unsupported platform %.64q; use one of %s", v.Name, name, strings.Join(platform.Names(), ", "))
		}
		d.Sums = append(d.Sums, sum{
			Docker:     p.DockerArch,
			RunnerArch: p.RunnerArch,
			Arg:        "RUNNER_SHA256_" + strings.ToUpper(p.DockerArch),
			Sum:        v.Runner.SHA256[name],
		})
	}
	return d, nil
}

// labels are the image's labels, sorted by key.
func labels(v *variants.Variant) []label {
	m := map[string]string{
		"org.opencontainers.image.title":       "worker-github_runner",
		"org.opencontainers.image.description": description(v),
		"org.opencontainers.image.base.name":   v.Base,
		LabelPrefix + "variant":                v.Name,
		LabelPrefix + "flavour":                v.Flavour,
		LabelPrefix + "runner-version":         v.Runner.Version,
		LabelPrefix + "kaniko-version":         v.Kaniko.Version,
	}
	if v.CUDA != "" {
		m[LabelPrefix+"cuda-version"] = v.CUDA
	}
	if v.IsScaler() {
		delete(m, LabelPrefix+"runner-version")
		delete(m, LabelPrefix+"kaniko-version")
	}
	for k, val := range v.Labels {
		m[k] = val
	}
	var out []label
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, label{k, m[k]})
	}
	return out
}

// LabelPrefix starts the labels imagegen adds besides the OCI ones.
const LabelPrefix = "io.runpod.worker-github-runner."

func description(v *variants.Variant) string {
	if v.IsScaler() {
		return "Autoscaler of GitHub Actions runners on RunPod serverless (scaler)"
	}
	if v.CUDA != "" {
		return fmt.Sprintf("Ephemeral GitHub Actions runner for RunPod serverless (GPU, CUDA %s)", v.CUDA)
	}
	return fmt.Sprintf("Ephemeral GitHub Actions runner for RunPod serverless (%s)", strings.ToUpper(v.Flavour))
}

// sourceFile keeps only the file name of "path/to/variants.hcl:12:1", so the
// bytes do not depend on where the checkout is, with control characters
// escaped: the name goes into a comment line, and a newline in it would
// start an instruction.
func sourceFile(src string) string {
	for range 2 { // drop ":col", then ":line"; the name may hold ':' too
		if i := strings.LastIndex(src, ":"); i >= 0 {
			src = src[:i]
		}
	}
	return variants.EscapeControl(filepath.Base(src))
}

// quote makes a Dockerfile double-quoted word: the parser strips the quotes
// and expands $VARS, so quotes, backslashes and dollars are escaped.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`)
	return `"` + r.Replace(s) + `"`
}
