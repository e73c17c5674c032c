package variants

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// Options are the overrides given from outside the file.
type Options struct {
	// Vars are NAME=VALUE pairs (--var); they win over the environment.
	Vars []string
	// LookupEnv reads the environment; nil means os.LookupEnv. Only
	// declared variables are looked up.
	LookupEnv func(string) (string, bool)
	// Sets are VARIANT.FIELD=VALUE overrides (--set), VARIANT a glob.
	Sets []string
	// NoPins leaves image references unpinned (pins.go): `imagegen pin`
	// resolves them afresh. The pins are still checked.
	NoPins bool
}

// Source is one variants file's name and contents.
type Source struct {
	Name string
	Data []byte
}

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: PinsAttribute}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "runner"},
		{Type: "kaniko"},
		{Type: "golang"},
		{Type: "variant", LabelNames: []string{"name"}},
	},
}

var runnerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "version", Required: true},
		{Name: "url", Required: true},
		{Name: "sha256", Required: true},
	},
}

var kanikoSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "version", Required: true},
		{Name: "image", Required: true},
	},
}

var golangSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "version", Required: true},
		{Name: "image", Required: true},
	},
}

// Variant attributes. Everything but inherits and abstract is inherited.
var variantSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "abstract"},
		{Name: "inherits"},
		{Name: "matrix"},
		{Name: "name"},
		{Name: "include"},
		{Name: "exclude"},
		{Name: "flavour"},
		{Name: "base"},
		{Name: "cuda"},
		{Name: "platforms"},
		{Name: "image"},
		{Name: "tags"},
		{Name: "labels"},
		{Name: "args"},
		{Name: "runner_packages"},
		{Name: "packages"},
		{Name: "steps"},
		{Name: "template"},
		{Name: "compression"},
		{Name: "compression_level"},
		{Name: "force_compression"},
		{Name: "attest"},
	},
}

var requiredVariantAttrs = []string{"flavour", "base", "image", "tags"}

// Files holds the parsed sources, for printing diagnostics with code frames.
type Files map[string]*hcl.File

// LoadFiles reads and resolves the variants files at paths. Blocks of all
// files form one matrix, so a user can keep their own variants in a second
// file next to the project's.
func LoadFiles(paths []string, opts Options) (*Matrix, Files, hcl.Diagnostics) {
	var srcs []Source
	var diags hcl.Diagnostics
	for _, p := range paths {
		b, d := readSource(p)
		if d != nil {
			diags = append(diags, d)
			continue
		}
		srcs = append(srcs, Source{Name: p, Data: b})
	}
	if diags.HasErrors() {
		return nil, Files{}, diags
	}
	return Load(srcs, opts)
}

// Load parses and resolves variants sources. The matrix is nil when any
// error diagnostic is returned; warnings may come with a matrix.
func Load(srcs []Source, opts Options) (*Matrix, Files, hcl.Diagnostics) {
	p := hclparse.NewParser()
	var diags hcl.Diagnostics
	var bodies []hcl.Body
	unparsed := Files{}
	for _, s := range srcs {
		if d := checkSource(s); d.HasErrors() {
			diags = append(diags, d...)
			unparsed[s.Name] = &hcl.File{Bytes: s.Data}
			continue
		}
		f, d := p.ParseHCL(s.Data, s.Name)
		diags = append(diags, d...)
		if f != nil {
			bodies = append(bodies, f.Body)
		}
	}
	files := Files(p.Files())
	maps.Copy(files, unparsed)
	if diags.HasErrors() {
		return nil, files, diags
	}
	m, d := evaluate(bodies, opts)
	diags = append(diags, d...)
	if diags.HasErrors() {
		return nil, files, diags
	}
	return m, files, diags
}

type evaluator struct {
	global   *hcl.EvalContext
	runner   RunnerRelease
	runPos   runnerPos
	kaniko   Kaniko
	kanPos   map[string]hcl.Range
	golang   Golang
	goPos    map[string]hcl.Range
	blocks   map[string]*variantBlock
	order    []string
	variants []*Variant
}

type runnerPos struct {
	version, url, sha256 hcl.Range
	sums                 map[string]hcl.Range
}

type variantBlock struct {
	name     string
	block    *hcl.Block
	attrs    hcl.Attributes
	abstract bool
	inherits []item
	merged   hcl.Attributes
	state    int
}

func evaluate(bodies []hcl.Body, opts Options) (*Matrix, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var content hcl.BodyContent
	content.Attributes = hcl.Attributes{}
	var pinAttrs []*hcl.Attribute
	for _, b := range bodies {
		c, d := b.Content(rootSchema)
		diags = append(diags, d...)
		content.Blocks = append(content.Blocks, c.Blocks...)
		if a, ok := c.Attributes[PinsAttribute]; ok {
			pinAttrs = append(pinAttrs, a)
		}
	}
	byType := map[string]hcl.Blocks{}
	for _, b := range content.Blocks {
		byType[b.Type] = append(byType[b.Type], b)
	}

	// Phase 1: variables.
	vars, d := declareVariables(byType["variable"])
	diags = append(diags, d...)
	overrides, d := collectOverrides(vars, opts)
	diags = append(diags, d...)
	ev := &evaluator{global: &hcl.EvalContext{Functions: Functions(), Variables: map[string]cty.Value{}}}
	scope := &variableScope{vars: vars, overrides: overrides, ctx: ev.global}
	if diags.HasErrors() {
		return nil, diags
	}
	diags = append(diags, scope.resolveAll()...)
	if diags.HasErrors() {
		return nil, diags
	}

	// Phase 2: runner and kaniko.
	diags = append(diags, ev.runnerBlock(byType["runner"])...)
	diags = append(diags, ev.kanikoBlock(byType["kaniko"])...)
	diags = append(diags, ev.golangBlock(byType["golang"])...)

	// Phase 3: variant blocks, inheritance, matrices.
	diags = append(diags, ev.declareVariants(byType["variant"])...)
	if diags.HasErrors() {
		return nil, diags
	}
	diags = append(diags, ev.expand()...)
	if diags.HasErrors() {
		return nil, diags
	}

	// Phase 4: --set.
	diags = append(diags, applySets(ev.variants, opts.Sets)...)
	if diags.HasErrors() {
		return nil, diags
	}

	// Phase 4b: variants built on variants (base = variant.NAME).
	diags = append(diags, resolveBases(ev.variants)...)
	if diags.HasErrors() {
		return nil, diags
	}

	// Phase 5: validation of everything, all errors together.
	diags = append(diags, ev.validateRunner()...)
	diags = append(diags, validateKaniko(ev.kaniko, ev.kanPos)...)
	diags = append(diags, validateGolang(ev.golang, ev.goPos)...)
	pins, d := readPins(pinAttrs)
	diags = append(diags, d...)
	seen := map[string]*Variant{}
	for _, v := range ev.variants {
		if prev, ok := seen[v.Name]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate variant",
				Detail:   fmt.Sprintf("A variant named %q is already defined at %s; variant names must be unique.", v.Name, prev.Source),
				Subject:  v.namePos.Ptr(),
			})
			continue
		}
		seen[v.Name] = v
		diags = append(diags, validateVariant(v)...)
	}
	if !diags.HasErrors() {
		diags = append(diags, duplicateTags(ev.variants)...)
	}
	if len(ev.variants) == 0 && !diags.HasErrors() {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "No variants",
			Detail:   "The matrix has no variant to build: add a `variant \"name\" { ... }` block.",
		})
	}
	if diags.HasErrors() {
		return nil, diags
	}
	if opts.NoPins {
		pins = nil
	} else {
		diags = append(diags, pins.apply(ev.variants)...)
	}
	for _, v := range ev.variants {
		v.finish()
	}
	sort.SliceStable(ev.variants, func(i, j int) bool { return ev.variants[i].Name < ev.variants[j].Name })
	return &Matrix{Variants: ev.variants, Pins: pins}, diags
}

func collectOverrides(vars map[string]*variable, opts Options) (map[string]override, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	out := map[string]override{}
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	for name := range vars {
		if v, ok := lookup(name); ok {
			out[name] = override{raw: v, source: "environment variable " + name}
		}
	}
	for _, kv := range opts.Vars {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid --var",
				Detail:   fmt.Sprintf("--var %q must look like NAME=VALUE.", kv),
			})
			continue
		}
		if _, ok := vars[name]; !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown variable in --var",
				Detail:   fmt.Sprintf("--var %s: no variable %q is declared%s.", kv, name, suggest(name, slices.Sorted(maps.Keys(vars)))),
			})
			continue
		}
		out[name] = override{raw: val, source: "--var"}
	}
	return out, diags
}

func (ev *evaluator) single(blocks hcl.Blocks, typ string) (*hcl.Block, hcl.Diagnostics) {
	if len(blocks) == 0 {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Missing %s block", typ),
			Detail:   fmt.Sprintf("The matrix needs exactly one `%s { ... }` block.", typ),
		}}
	}
	var diags hcl.Diagnostics
	for _, b := range blocks[1:] {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Duplicate %s block", typ),
			Detail:   fmt.Sprintf("A %s block is already defined at %s.", typ, rangeString(blocks[0].DefRange)),
			Subject:  b.DefRange.Ptr(),
		})
	}
	return blocks[0], diags
}

func (ev *evaluator) runnerBlock(blocks hcl.Blocks) hcl.Diagnostics {
	b, diags := ev.single(blocks, "runner")
	if b == nil {
		return diags
	}
	c, d := b.Body.Content(runnerSchema)
	diags = append(diags, d...)
	if a, ok := c.Attributes["version"]; ok {
		ev.runner.Version, _, d = evalString(a.Expr, ev.global, "runner.version")
		ev.runPos.version = a.Expr.Range()
		diags = append(diags, d...)
	}
	if a, ok := c.Attributes["url"]; ok {
		ev.runner.URL, _, d = evalString(a.Expr, ev.global, "runner.url")
		ev.runPos.url = a.Expr.Range()
		diags = append(diags, d...)
	}
	ev.runner.SHA256 = map[string]string{}
	ev.runPos.sums = map[string]hcl.Range{}
	if a, ok := c.Attributes["sha256"]; ok {
		m, d := evalMap(a.Expr, ev.global, "runner.sha256")
		diags = append(diags, d...)
		ev.runPos.sha256 = a.Expr.Range()
		for k, it := range m {
			ev.runner.SHA256[k] = it.val
			ev.runPos.sums[k] = it.rng
		}
	}
	return diags
}

func (ev *evaluator) kanikoBlock(blocks hcl.Blocks) hcl.Diagnostics {
	b, diags := ev.single(blocks, "kaniko")
	if b == nil {
		return diags
	}
	ev.kanPos = map[string]hcl.Range{}
	return append(diags, ev.toolAttrs(b, "kaniko", kanikoSchema, &ev.kaniko.Version, &ev.kaniko.Image, ev.kanPos)...)
}

// toolAttrs reads a tool block's version and image (kaniko, golang),
// noting where each was set.
func (ev *evaluator) toolAttrs(b *hcl.Block, name string, schema *hcl.BodySchema, version, image *string, pos map[string]hcl.Range) hcl.Diagnostics {
	c, diags := b.Body.Content(schema)
	for _, f := range []struct {
		attr string
		dst  *string
	}{{"version", version}, {"image", image}} {
		attr, dst := f.attr, f.dst
		if a, ok := c.Attributes[attr]; ok {
			v, _, d := evalString(a.Expr, ev.global, name+"."+attr)
			*dst, pos[attr] = v, a.Expr.Range()
			diags = append(diags, d...)
		}
	}
	return diags
}

// golangBlock reads the optional golang block; without one, the worker
// is compiled with DefaultGolang.
func (ev *evaluator) golangBlock(blocks hcl.Blocks) hcl.Diagnostics {
	ev.golang, ev.goPos = DefaultGolang, map[string]hcl.Range{}
	if len(blocks) == 0 {
		return nil
	}
	b, diags := ev.single(blocks, "golang")
	if b == nil {
		return diags
	}
	return append(diags, ev.toolAttrs(b, "golang", golangSchema, &ev.golang.Version, &ev.golang.Image, ev.goPos)...)
}

func (ev *evaluator) declareVariants(blocks hcl.Blocks) hcl.Diagnostics {
	var diags hcl.Diagnostics
	ev.blocks = map[string]*variantBlock{}
	for _, b := range blocks {
		name := b.Labels[0]
		if prev, ok := ev.blocks[name]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate variant",
				Detail:   fmt.Sprintf("A variant block named %q is already defined at %s.", name, rangeString(prev.block.DefRange)),
				Subject:  b.LabelRanges[0].Ptr(),
			})
			continue
		}
		c, d := b.Body.Content(variantSchema)
		diags = append(diags, d...)
		vb := &variantBlock{name: name, block: b, attrs: c.Attributes}
		if a, ok := c.Attributes["abstract"]; ok {
			vb.abstract, d = evalBool(a.Expr, ev.global, "abstract")
			diags = append(diags, d...)
		}
		if a, ok := c.Attributes["inherits"]; ok {
			vb.inherits, d = evalList(a.Expr, ev.global, "inherits")
			diags = append(diags, d...)
		}
		ev.blocks[name] = vb
		ev.order = append(ev.order, name)
	}
	if diags.HasErrors() {
		return diags
	}
	for _, name := range ev.order {
		diags = append(diags, ev.merge(ev.blocks[name], nil)...)
	}
	return diags
}

// merge computes a block's attributes after inheritance: parents in the
// order listed (a later parent wins), then the block's own attributes.
func (ev *evaluator) merge(vb *variantBlock, stack []string) hcl.Diagnostics {
	switch vb.state {
	case 2:
		return nil
	case 1:
		chain := append(append([]string{}, stack...), vb.name)
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Inheritance cycle",
			Detail:   fmt.Sprintf("Variant %q inherits from itself: %s.", vb.name, strings.Join(chain, " -> ")),
			Subject:  vb.attrs["inherits"].Expr.Range().Ptr(),
		}}
	}
	if len(stack) >= maxChain {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Inheritance chain too deep",
			Detail:   fmt.Sprintf("Variant %q inherits through more than %d variants (%s -> ... -> %s).", stack[0], maxChain, stack[0], vb.name),
			Subject:  vb.block.DefRange.Ptr(),
		}}
	}
	vb.state = 1
	defer func() { vb.state = 2 }()
	stack = append(stack, vb.name)
	var diags hcl.Diagnostics
	merged := hcl.Attributes{}
	for _, p := range vb.inherits {
		parent, ok := ev.blocks[p.val]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown parent variant",
				Detail:   fmt.Sprintf("Variant %q inherits from %q, which is not declared%s.", vb.name, p.val, suggest(p.val, ev.order)),
				Subject:  p.rng.Ptr(),
			})
			continue
		}
		d := ev.merge(parent, stack)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		for k, a := range parent.merged {
			merged[k] = a
		}
	}
	for k, a := range vb.attrs {
		merged[k] = a
	}
	delete(merged, "abstract")
	delete(merged, "inherits")
	vb.merged = merged
	return diags
}

func (ev *evaluator) expand() hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, name := range ev.order {
		vb := ev.blocks[name]
		if vb.abstract {
			continue
		}
		var missing []string
		for _, r := range requiredVariantAttrs {
			if _, ok := vb.merged[r]; !ok {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Missing required argument",
				Detail:   fmt.Sprintf("Variant %q needs %s (set here or in a variant it inherits).", name, strings.Join(missing, ", ")),
				Subject:  vb.block.DefRange.Ptr(),
			})
			continue
		}
		combos, d := ev.combinations(vb)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		for _, combo := range combos {
			v, d := ev.variant(vb, combo)
			diags = append(diags, d...)
			if v != nil {
				ev.variants = append(ev.variants, v)
			}
		}
		if len(ev.variants) > maxVariants {
			return append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Matrix too large",
				Detail:   fmt.Sprintf("The variants up to %q make more than %d; the whole matrix may have at most %d variants.", name, maxVariants, maxVariants),
				Subject:  vb.block.DefRange.Ptr(),
			})
		}
	}
	return diags
}

// variant evaluates one variant (one matrix combination) of a block.
func (ev *evaluator) variant(vb *variantBlock, combo *combination) (*Variant, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	ctx := ev.global
	v := &Variant{
		Name:      vb.name,
		Platforms: []string{"linux/amd64"},
		Labels:    map[string]string{},
		Args:      map[string]string{},
		Runner:    ev.runner,
		Kaniko:    ev.kaniko,
		Golang:    ev.golang,
		Source:    rangeString(vb.block.DefRange),
		namePos:   vb.block.LabelRanges[0],
		pos:       map[string]hcl.Range{},
		listPos:   map[string][]hcl.Range{},
		mapPos:    map[string]map[string]hcl.Range{},
		runPos:    ev.runPos,
	}
	v.Runner.SHA256 = copyMap(ev.runner.SHA256)
	if combo != nil {
		ctx = ev.global.NewChild()
		ctx.Variables = combo.vars
		v.Matrix = combo.values
		v.Name = combo.name
		v.namePos = combo.namePos
	}
	str := func(field string, dst *string) {
		a, ok := vb.merged[field]
		if !ok {
			return
		}
		s, _, d := evalString(a.Expr, ctx, field)
		diags = append(diags, d...)
		*dst = s
		v.pos[field] = a.Expr.Range()
	}
	list := func(field string, dst *[]string) {
		a, ok := vb.merged[field]
		if !ok {
			return
		}
		items, d := evalList(a.Expr, ctx, field)
		diags = append(diags, d...)
		*dst = itemValues(items)
		v.pos[field] = a.Expr.Range()
		v.listPos[field] = itemRanges(items)
	}
	mp := func(field string, dst map[string]string) {
		a, ok := vb.merged[field]
		if !ok {
			return
		}
		m, d := evalMap(a.Expr, ctx, field)
		diags = append(diags, d...)
		v.pos[field] = a.Expr.Range()
		v.mapPos[field] = map[string]hcl.Range{}
		for k, it := range m {
			dst[k] = it.val
			v.mapPos[field][k] = it.rng
		}
	}
	str("flavour", &v.Flavour)
	if a, ok := vb.merged["base"]; ok {
		if name, isRef := baseVariantRef(a.Expr); isRef {
			v.BaseVariant = name
			v.pos["base"] = a.Expr.Range()
		} else {
			str("base", &v.Base)
		}
	}
	str("cuda", &v.CUDA)
	list("platforms", &v.Platforms)
	str("image", &v.Image)
	list("tags", &v.Tags)
	mp("labels", v.Labels)
	mp("args", v.Args)
	if a, ok := vb.merged["template"]; ok {
		str("template", &v.Template)
		if v.Template != "" && !filepath.IsAbs(v.Template) {
			v.Template = filepath.Join(filepath.Dir(a.Expr.Range().Filename), v.Template)
		}
	}
	list("runner_packages", &v.RunnerPackages)
	list("packages", &v.Packages)
	diags = append(diags, evalBuildOptions(v, vb.merged, ctx)...)
	if !diags.HasErrors() {
		ctx = stepScope(ctx, v)
	}
	list("steps", &v.Steps)
	if diags.HasErrors() {
		return nil, diags
	}
	return v, diags
}

// stepScope adds the variant's own values to what its steps may use:
// ${name}, ${flavour}, ${cuda}, ${base}, ${image} (besides variables and
// matrix keys).
func stepScope(ctx *hcl.EvalContext, v *Variant) *hcl.EvalContext {
	child := ctx.NewChild()
	child.Variables = map[string]cty.Value{
		"name":    cty.StringVal(v.Name),
		"flavour": cty.StringVal(v.Flavour),
		"cuda":    cty.StringVal(v.CUDA),
		"base":    cty.StringVal(v.Base),
		"image":   cty.StringVal(v.Image),
	}
	return child
}

func itemRanges(items []item) []hcl.Range {
	out := make([]hcl.Range, len(items))
	for i, it := range items {
		out[i] = it.rng
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
