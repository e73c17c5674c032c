// Package render turns a resolved variant into its Dockerfile. The output
// depends only on the variant: identical input gives identical bytes, so
// rendered files can be committed and checked in CI.
package render

import (
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"github.com/runpod-workers/worker-github_runner/internal/platform"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
	"github.com/runpod-workers/worker-github_runner/templates"
)

// TemplatePackages are installed by every image whatever the variant says:
// the template itself needs them to download and verify the runner.
var TemplatePackages = []string{"ca-certificates", "curl"}

var tmpl = template.Must(template.New("Dockerfile").Funcs(template.FuncMap{
	"quote": quote,
}).Parse(templates.Dockerfile))

// Plan is what a build of one variant needs.
type Plan struct {
	Dockerfile []byte
}

// FileName is the rendered Dockerfile's name for a variant.
func FileName(v *variants.Variant) string { return v.Name + ".Dockerfile" }

type label struct{ Key, Value string }

type sum struct{ Docker, RunnerArch, Arg, Sum string }

type data struct {
	V          *variants.Variant
	SourceFile string
	// WorkerBinary is the worker's file name in the build context, as the
	// Dockerfile names it (platform.DockerfileWorkerBinary).
	WorkerBinary string
	Packages     []string
	Sums         []sum
	Args         []label
	Labels       []label
}

// Variant renders one variant.
func Variant(v *variants.Variant) (*Plan, error) {
	d := data{V: v, SourceFile: sourceFile(v.Source), WorkerBinary: platform.DockerfileWorkerBinary()}
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
	for _, k := range slices.Sorted(maps.Keys(v.Args)) {
		d.Args = append(d.Args, label{k, v.Args[k]})
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "worker-github_runner",
		"org.opencontainers.image.description": description(v),
		"org.opencontainers.image.base.name":   v.Base,
		LabelPrefix + "variant":                v.Name,
		LabelPrefix + "flavour":                v.Flavour,
		LabelPrefix + "runner-version":         v.Runner.Version,
		LabelPrefix + "kaniko-version":         v.Kaniko.Version,
	}
	if v.CUDA != "" {
		labels[LabelPrefix+"cuda-version"] = v.CUDA
	}
	for k, val := range v.Labels {
		labels[k] = val
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		d.Labels = append(d.Labels, label{k, labels[k]})
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render variant %s: %w", v.Name, err)
	}
	return &Plan{Dockerfile: b.Bytes()}, nil
}

// LabelPrefix starts the labels imagegen adds besides the OCI ones.
const LabelPrefix = "io.runpod.worker-github-runner."

func description(v *variants.Variant) string {
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
