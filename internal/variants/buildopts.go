package variants

import (
	"encoding/csv"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/runpod-workers/worker-github_runner/internal/imageref"
)

// Layer compression algorithms: BuildKit's compression= values.
const (
	CompressionGzip         = "gzip"
	CompressionZstd         = "zstd"
	CompressionUncompressed = "uncompressed"
)

// compressionLevels are the levels each algorithm takes (BuildKit's, as
// Docker documents them); uncompressed takes none.
var compressionLevels = map[string][2]int{CompressionGzip: {0, 9}, CompressionZstd: {0, 22}}

// Attestation types (bake's and BuildKit's attest:TYPE).
const (
	AttestProvenance = "provenance"
	AttestSBOM       = "sbom"
)

// Attestation is one attestation request in bake's vocabulary:
// type=provenance,mode=max or type=sbom,generator=IMAGE, or
// type=...,disabled=true to turn one off.
type Attestation struct {
	Type     string
	Disabled bool
	// Attrs are the other keys (mode, version, builder-id, generator).
	Attrs map[string]string
}

// maxAttestValue is the longest value an attestation key takes: values
// go into published provenance, and none needs more.
const maxAttestValue = 1024

// attestKeys are the keys each type takes besides type and disabled,
// with a check of the value: why it is wrong ("" when fine), said after
// KEY="VALUE".
var attestKeys = map[string]map[string]func(string) string{
	AttestProvenance: {
		"mode":    oneOf("min", "max"),
		"version": oneOf("v0.2", "v1"),
		"builder-id": func(s string) string {
			if s == "" {
				return "is empty: give the builder's URI, or leave builder-id out"
			}
			return ""
		},
	},
	AttestSBOM: {
		"generator": func(s string) string {
			if why := imageref.Check(s, imageref.Image); why != "" {
				return "is not an image reference: " + why
			}
			return ""
		},
	},
}

func oneOf(values ...string) func(string) string {
	return func(s string) string {
		if !slices.Contains(values, s) {
			return "is not one of " + strings.Join(values, ", ")
		}
		return ""
	}
}

// ParseAttestation parses one attestation in bake's form: one line of
// comma-separated KEY=VALUE (CSV quoting allowed), each key once, no
// control character, no value longer than maxAttestValue; it checks the
// type, its keys and their values. Errors quote at most 100 characters of
// a value.
func ParseAttestation(s string) (Attestation, error) {
	if err := checkAttestChars(s); err != nil {
		return Attestation{}, err
	}
	r := csv.NewReader(strings.NewReader(s))
	r.TrimLeadingSpace = true
	fields, err := r.Read()
	if err != nil && s != "" {
		return Attestation{}, fmt.Errorf("%s is not comma-separated KEY=VALUE: %v", short(s), err)
	}
	a := Attestation{Attrs: map[string]string{}}
	seen := map[string]bool{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok {
			return Attestation{}, fmt.Errorf("%s is not KEY=VALUE", short(f))
		}
		if seen[k] {
			return Attestation{}, fmt.Errorf("key %s is given twice; give each key once", short(k))
		}
		seen[k] = true
		if err := a.set(k, v); err != nil {
			return Attestation{}, err
		}
	}
	return a, a.check()
}

// set records one KEY=VALUE of an attestation.
func (a *Attestation) set(k, v string) error {
	if len(v) > maxAttestValue {
		return fmt.Errorf("%s=… is %d bytes long; at most %d", cut(k, 100), len(v), maxAttestValue)
	}
	switch k {
	case "type":
		a.Type = v
	case "disabled":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("disabled=%s is not true or false", short(v))
		}
		a.Disabled = b
	default:
		a.Attrs[k] = v
	}
	return nil
}

// checkAttestChars refuses line breaks (an attestation is one CSV record)
// and other control characters, saying where (characters counted from 1)
// and in the value of which key.
func checkAttestChars(s string) error {
	n := 0
	for i, r := range s {
		n++
		switch {
		case r == '\n' || r == '\r':
			return fmt.Errorf("one line only: a line break (%U) at character %d", r, n)
		case unicode.IsControl(r):
			return fmt.Errorf("%scontrol character %U at character %d", keyBefore(s[:i]), r, n)
		}
	}
	return nil
}

// keyBefore is "KEY: " when prefix ends inside the value of KEY, else "".
func keyBefore(prefix string) string {
	field := prefix[strings.LastIndexByte(prefix, ',')+1:]
	if k, _, ok := strings.Cut(field, "="); ok {
		return strings.Trim(strings.ToLower(strings.TrimSpace(k)), `"`) + ": "
	}
	return ""
}

func (a Attestation) check() error {
	keys, ok := attestKeys[a.Type]
	if !ok {
		if a.Type == "" {
			return fmt.Errorf("no type: start with type=provenance or type=sbom")
		}
		return fmt.Errorf("type=%s is not an attestation type: use provenance or sbom", short(a.Type))
	}
	for _, k := range slices.Sorted(maps.Keys(a.Attrs)) {
		check, ok := keys[k]
		if !ok {
			return fmt.Errorf("type=%s takes no key %s%s; its keys are %s, disabled", a.Type, short(k), suggest(k, slices.Sorted(maps.Keys(keys))), strings.Join(slices.Sorted(maps.Keys(keys)), ", "))
		}
		if why := check(a.Attrs[k]); why != "" {
			return fmt.Errorf("type=%s: %s=%s %s", a.Type, k, short(a.Attrs[k]), why)
		}
	}
	return nil
}

// String is the attestation in bake's form, keys after type sorted: what
// BuildKit's frontend takes as the attest:TYPE attribute.
func (a Attestation) String() string {
	parts := []string{"type=" + a.Type}
	if a.Disabled {
		parts = append(parts, "disabled=true")
	}
	for _, k := range slices.Sorted(maps.Keys(a.Attrs)) {
		parts = append(parts, csvField(k+"="+a.Attrs[k]))
	}
	return strings.Join(parts, ",")
}

func csvField(f string) string {
	if strings.ContainsAny(f, ",\"\n\r") {
		return `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
	}
	return f
}

// MergeAttestations applies over (--attest flags) to base (a variant's):
// an entry of over replaces base's entry of the same type, and disabled
// entries are dropped. The result is sorted by type.
func MergeAttestations(base, over []Attestation) []Attestation {
	byType := map[string]Attestation{}
	for _, a := range base {
		byType[a.Type] = a
	}
	for _, a := range over {
		byType[a.Type] = a
	}
	var out []Attestation
	for _, t := range slices.Sorted(maps.Keys(byType)) {
		if a := byType[t]; !a.Disabled {
			out = append(out, a)
		}
	}
	return out
}

// Attestations parses the variant's attest list (Load checked it).
func (v *Variant) Attestations() []Attestation {
	var out []Attestation
	for _, s := range v.Attest {
		if a, err := ParseAttestation(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// evalBuildOptions evaluates a variant's compression and attest
// attributes, noting where each was set.
func evalBuildOptions(v *Variant, attrs hcl.Attributes, ctx *hcl.EvalContext) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if a, ok := attrs["compression"]; ok {
		// null is unset (gzip); "" is set, and refused by validation.
		s, ok, d := evalString(a.Expr, ctx, "compression")
		if ok {
			v.Compression, v.pos["compression"] = s, a.Expr.Range()
		}
		diags = append(diags, d...)
	}
	if a, ok := attrs["compression_level"]; ok {
		n, d := evalInt(a.Expr, ctx, "compression_level")
		v.CompressionLevel, v.pos["compression_level"] = n, a.Expr.Range()
		diags = append(diags, d...)
	}
	if a, ok := attrs["force_compression"]; ok {
		b, d := evalBool(a.Expr, ctx, "force_compression")
		v.ForceCompression, v.pos["force_compression"] = b, a.Expr.Range()
		diags = append(diags, d...)
	}
	if a, ok := attrs["attest"]; ok {
		items, d := evalList(a.Expr, ctx, "attest")
		v.Attest, v.pos["attest"], v.listPos["attest"] = itemValues(items), a.Expr.Range(), itemRanges(items)
		diags = append(diags, d...)
	}
	return diags
}

// evalInt evaluates expr to a whole number; null is unset (nil).
func evalInt(expr hcl.Expression, ctx *hcl.EvalContext, what string) (*int, hcl.Diagnostics) {
	val, diags := expr.Value(ctx)
	if diags.HasErrors() || val.IsNull() {
		return nil, diags
	}
	n, err := convert.Convert(val, cty.Number)
	if err != nil || !n.IsKnown() || n.IsNull() || !n.AsBigFloat().IsInt() {
		return nil, append(diags, typeError(expr, what, "a whole number"))
	}
	i, acc := n.AsBigFloat().Int64()
	if acc != 0 || i < -1<<31 || i > 1<<31-1 {
		return nil, append(diags, typeError(expr, what, "a whole number"))
	}
	out := int(i)
	return &out, diags
}

// validateBuildOptions checks compression and attestations.
func validateBuildOptions(v *Variant) hcl.Diagnostics {
	var diags hcl.Diagnostics
	add := func(d *hcl.Diagnostic) { diags = append(diags, d) }
	algo := v.Compression
	levels, known := compressionLevels[algo]
	_, inFile := v.pos["compression"]
	_, bySet := v.setBy["compression"]
	switch {
	case algo == "" && (inFile || bySet):
		add(v.errorf("compression", v.at("compression"), "Invalid compression",
			"compression is empty: use \"gzip\" (the default), \"zstd\" or \"uncompressed\"."))
	case algo == "":
		algo, levels, known = CompressionGzip, compressionLevels[CompressionGzip], true
		if v.ForceCompression {
			add(v.errorf("force_compression", v.at("force_compression"), "force_compression without compression",
				"force_compression = true re-compresses the base image's layers, but compression is not set: say which (compression = \"zstd\", or \"gzip\")."))
		}
	case algo == CompressionUncompressed:
	case !known:
		add(v.errorf("compression", v.at("compression"), "Invalid compression",
			"compression = %s: use \"gzip\" (the default), \"zstd\" or \"uncompressed\".", short(algo)))
	}
	if l := v.CompressionLevel; l != nil {
		switch {
		case algo == CompressionUncompressed:
			add(v.errorf("compression_level", v.at("compression_level"), "Invalid compression level",
				"compression_level = %d, but uncompressed layers have no level; remove compression_level (if the variant inherits it, set compression_level = null here), or drop it with --set %s.compression_level=", *l, v.Name))
		case known && (*l < levels[0] || *l > levels[1]):
			add(v.errorf("compression_level", v.at("compression_level"), "Invalid compression level",
				"compression_level = %d: %s takes %d to %d.", *l, algo, levels[0], levels[1]))
		}
	}
	seen := map[string]bool{}
	for i, s := range v.Attest {
		a, err := ParseAttestation(s)
		switch {
		case err != nil:
			add(v.errorf("attest", v.listAt("attest", i), "Invalid attestation", "attest %s: %v.", short(s), err))
		case seen[a.Type]:
			add(v.errorf("attest", v.listAt("attest", i), "Duplicate attestation", "attest lists type=%s twice; keep one entry per type.", a.Type))
		}
		seen[a.Type] = true
	}
	return diags
}
