package variants

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// combination is one point of a variant's matrix.
type combination struct {
	values  map[string]string
	vars    map[string]cty.Value
	name    string
	namePos hcl.Range
}

func (c *combination) key(keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = c.values[k]
	}
	return strings.Join(parts, "\x00")
}

// combinations expands a block's matrix: the cartesian product of its keys
// taken in sorted key order and listed value order, minus `exclude`, plus
// `include`. A block without a matrix yields one nil combination.
func (ev *evaluator) combinations(vb *variantBlock) ([]*combination, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	ma, ok := vb.merged["matrix"]
	if !ok {
		for _, f := range []string{"name", "include", "exclude"} {
			if a, ok := vb.merged[f]; ok {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("%s without matrix", f),
					Detail:   fmt.Sprintf("Variant %q sets %s, which only applies to a variant with a matrix.", vb.name, f),
					Subject:  a.NameRange.Ptr(),
				})
			}
		}
		return []*combination{nil}, diags
	}

	axes, keys, diags := evalMatrix(ma.Expr, ev.global)
	if diags.HasErrors() {
		return nil, diags
	}
	if n := product(axes); n > maxVariants {
		return nil, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Matrix too large",
			Detail:   fmt.Sprintf("The matrix of variant %q has more than %d combinations; the whole matrix may have at most %d variants.", vb.name, maxVariants, maxVariants),
			Subject:  ma.Expr.Range().Ptr(),
		})
	}
	combos := []*combination{{values: map[string]string{}}}
	for _, k := range keys {
		var next []*combination
		for _, c := range combos {
			for _, val := range axes[k] {
				nv := copyMap(c.values)
				nv[k] = val
				next = append(next, &combination{values: nv})
			}
		}
		combos = next
	}

	if a, ok := vb.merged["exclude"]; ok {
		rules, d := evalObjects(a.Expr, ev.global, "exclude")
		diags = append(diags, d...)
		for _, r := range rules {
			if bad := unknownKeys(r.values, axes); len(bad) > 0 {
				diags = append(diags, matrixKeyError(r.rng, "exclude", bad, keys))
				continue
			}
			kept := combos[:0:0]
			for _, c := range combos {
				if !matches(c.values, r.values) {
					kept = append(kept, c)
				}
			}
			if len(kept) == len(combos) {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagWarning,
					Summary:  "Exclude matches nothing",
					Detail:   fmt.Sprintf("This exclude entry of variant %q matches no matrix combination.", vb.name),
					Subject:  r.rng.Ptr(),
				})
			}
			combos = kept
		}
	}
	if a, ok := vb.merged["include"]; ok {
		rules, d := evalObjects(a.Expr, ev.global, "include")
		diags = append(diags, d...)
		have := map[string]bool{}
		for _, c := range combos {
			have[c.key(keys)] = true
		}
		for _, r := range rules {
			bad := unknownKeys(r.values, axes)
			var missing []string
			for _, k := range keys {
				if _, ok := r.values[k]; !ok {
					missing = append(missing, k)
				}
			}
			if len(bad) > 0 || len(missing) > 0 {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid include entry",
					Detail:   fmt.Sprintf("An include entry must give exactly the matrix keys (%s); this one has unknown keys [%s] and lacks [%s].", strings.Join(keys, ", "), strings.Join(bad, ", "), strings.Join(missing, ", ")),
					Subject:  r.rng.Ptr(),
				})
				continue
			}
			c := &combination{values: r.values}
			if !have[c.key(keys)] {
				have[c.key(keys)] = true
				combos = append(combos, c)
			}
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	if len(combos) == 0 {
		return nil, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Empty matrix",
			Detail:   fmt.Sprintf("The matrix of variant %q has no combination left after exclude.", vb.name),
			Subject:  ma.Expr.Range().Ptr(),
		})
	}

	nameAttr, hasName := vb.merged["name"]
	for _, c := range combos {
		c.vars = map[string]cty.Value{}
		for k, val := range c.values {
			c.vars[k] = cty.StringVal(val)
		}
		if hasName {
			ctx := ev.global.NewChild()
			ctx.Variables = c.vars
			s, ok, d := evalString(nameAttr.Expr, ctx, "name")
			diags = append(diags, d...)
			if !ok && !d.HasErrors() {
				diags = append(diags, typeError(nameAttr.Expr, "name", "a string"))
			}
			c.name, c.namePos = s, nameAttr.Expr.Range()
			continue
		}
		parts := []string{vb.name}
		for _, k := range keys {
			parts = append(parts, c.values[k])
		}
		c.name, c.namePos = strings.Join(parts, "-"), ma.Expr.Range()
	}
	return combos, diags
}

func evalMatrix(expr hcl.Expression, ctx *hcl.EvalContext) (map[string][]string, []string, hcl.Diagnostics) {
	val, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return nil, nil, diags
	}
	if val.IsNull() || !(val.Type().IsObjectType() || val.Type().IsMapType()) {
		return nil, nil, append(diags, typeError(expr, "matrix", "a map of lists, like { cuda = [\"12.6.3\", \"12.8.1\"] }"))
	}
	keyRanges := map[string]hcl.Range{}
	if obj, ok := expr.(*hclsyntax.ObjectConsExpr); ok {
		for _, it := range obj.Items {
			if k, ok, _ := evalString(it.KeyExpr, ctx, "matrix key"); ok {
				keyRanges[k] = hcl.RangeBetween(it.KeyExpr.Range(), it.ValueExpr.Range())
			}
		}
	}
	at := func(k string) *hcl.Range {
		if r, ok := keyRanges[k]; ok {
			return r.Ptr()
		}
		return expr.Range().Ptr()
	}
	axes := map[string][]string{}
	for it := val.ElementIterator(); it.Next(); {
		kv, lv := it.Element()
		k := kv.AsString()
		if !hclsyntax.ValidIdentifier(k) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid matrix key",
				Detail:   fmt.Sprintf("Matrix key %q must be a valid identifier: it becomes a variable in the variant's expressions.", k),
				Subject:  at(k),
			})
			continue
		}
		items, err := listItems(lv, expr.Range())
		if err != nil || lv.IsNull() || !(lv.Type().IsListType() || lv.Type().IsTupleType() || lv.Type().IsSetType()) {
			diags = append(diags, typeError(&hclsyntax.LiteralValueExpr{SrcRange: *at(k)}, fmt.Sprintf("matrix key %q", k), "a list of strings"))
			continue
		}
		if len(items) == 0 {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Empty matrix axis",
				Detail:   fmt.Sprintf("Matrix key %q has no values.", k),
				Subject:  at(k),
			})
			continue
		}
		seen := map[string]bool{}
		for _, s := range itemValues(items) {
			if seen[s] {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate matrix value",
					Detail:   fmt.Sprintf("Matrix key %q lists %q twice.", k, s),
					Subject:  at(k),
				})
				continue
			}
			seen[s] = true
			axes[k] = append(axes[k], s)
		}
	}
	keys := slices.Sorted(maps.Keys(axes))
	if len(keys) == 0 && !diags.HasErrors() {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Empty matrix",
			Detail:   "A matrix needs at least one key with values.",
			Subject:  expr.Range().Ptr(),
		})
	}
	return axes, keys, diags
}

// product is the number of combinations of axes, or maxVariants+1 when
// that is more.
func product(axes map[string][]string) int {
	n := 1
	for _, vals := range axes {
		if n *= len(vals); n > maxVariants {
			return maxVariants + 1
		}
	}
	return n
}

type objectRule struct {
	values map[string]string
	rng    hcl.Range
}

// evalObjects evaluates a list of objects of strings (include / exclude).
func evalObjects(expr hcl.Expression, ctx *hcl.EvalContext, what string) ([]objectRule, hcl.Diagnostics) {
	var ranges []hcl.Range
	if tup, ok := expr.(*hclsyntax.TupleConsExpr); ok {
		for _, e := range tup.Exprs {
			ranges = append(ranges, e.Range())
		}
	}
	val, diags := expr.Value(ctx)
	if diags.HasErrors() || val.IsNull() {
		return nil, diags
	}
	if !(val.Type().IsListType() || val.Type().IsTupleType()) {
		return nil, append(diags, typeError(expr, what, "a list of objects"))
	}
	var out []objectRule
	i := 0
	for it := val.ElementIterator(); it.Next(); i++ {
		_, ov := it.Element()
		rng := expr.Range()
		if i < len(ranges) {
			rng = ranges[i]
		}
		if ov.IsNull() || !(ov.Type().IsObjectType() || ov.Type().IsMapType()) {
			diags = append(diags, typeError(&hclsyntax.LiteralValueExpr{SrcRange: rng}, what+" entry", "an object like { cuda = \"12.6.3\" }"))
			continue
		}
		r := objectRule{values: map[string]string{}, rng: rng}
		for e := ov.ElementIterator(); e.Next(); {
			k, v := e.Element()
			s, err := primitiveString(v)
			if err != nil || v.IsNull() {
				diags = append(diags, typeError(&hclsyntax.LiteralValueExpr{SrcRange: rng}, fmt.Sprintf("%s entry key %q", what, k.AsString()), "a string"))
				continue
			}
			r.values[k.AsString()] = s
		}
		out = append(out, r)
	}
	return out, diags
}

func unknownKeys(values map[string]string, axes map[string][]string) []string {
	var bad []string
	for k := range values {
		if _, ok := axes[k]; !ok {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	return bad
}

func matches(combo, rule map[string]string) bool {
	for k, v := range rule {
		if combo[k] != v {
			return false
		}
	}
	return true
}

func matrixKeyError(rng hcl.Range, what string, bad, keys []string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Unknown matrix key in %s", what),
		Detail:   fmt.Sprintf("%s names [%s], which the matrix does not have; its keys are %s.", what, strings.Join(bad, ", "), strings.Join(keys, ", ")),
		Subject:  rng.Ptr(),
	}
}
