package variants

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// item is an evaluated string with the source range it came from, so that a
// later check can point at the exact list element or map entry.
type item struct {
	val string
	rng hcl.Range
}

// evalString evaluates expr to a string. A null value yields ok=false.
func evalString(expr hcl.Expression, ctx *hcl.EvalContext, what string) (s string, ok bool, diags hcl.Diagnostics) {
	val, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return "", false, diags
	}
	if val.IsNull() {
		return "", false, nil
	}
	s, err := primitiveString(val)
	if err != nil {
		return "", false, append(diags, typeError(expr, what, "a string"))
	}
	return s, true, diags
}

// evalBool evaluates expr to a bool; null is false.
func evalBool(expr hcl.Expression, ctx *hcl.EvalContext, what string) (bool, hcl.Diagnostics) {
	val, diags := expr.Value(ctx)
	if diags.HasErrors() || val.IsNull() {
		return false, diags
	}
	b, err := convert.Convert(val, cty.Bool)
	if err != nil {
		return false, append(diags, typeError(expr, what, "true or false"))
	}
	return b.True(), diags
}

// evalList evaluates expr to a list of strings. Null elements are dropped, so
// `RELEASE == "dev" ? null : "latest-gpu"` leaves a tag out; a nested list is
// flattened one level.
func evalList(expr hcl.Expression, ctx *hcl.EvalContext, what string) ([]item, hcl.Diagnostics) {
	if tup, ok := expr.(*hclsyntax.TupleConsExpr); ok {
		var out []item
		var diags hcl.Diagnostics
		for _, e := range tup.Exprs {
			val, d := e.Value(ctx)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			items, err := listItems(val, e.Range())
			if err != nil {
				diags = append(diags, typeError(e, what, "a string or a list of strings"))
				continue
			}
			out = append(out, items...)
		}
		return out, diags
	}
	val, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return nil, diags
	}
	if val.IsNull() {
		return nil, diags
	}
	if !val.Type().IsListType() && !val.Type().IsTupleType() && !val.Type().IsSetType() {
		return nil, append(diags, typeError(expr, what, "a list of strings"))
	}
	items, err := listItems(val, expr.Range())
	if err != nil {
		return nil, append(diags, typeError(expr, what, "a list of strings"))
	}
	return items, diags
}

func listItems(val cty.Value, rng hcl.Range) ([]item, error) {
	if val.IsNull() {
		return nil, nil
	}
	t := val.Type()
	if t.IsListType() || t.IsTupleType() || t.IsSetType() {
		var out []item
		for it := val.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			if ev.IsNull() {
				continue
			}
			s, err := primitiveString(ev)
			if err != nil {
				return nil, err
			}
			out = append(out, item{s, rng})
		}
		return out, nil
	}
	s, err := primitiveString(val)
	if err != nil {
		return nil, err
	}
	return []item{{s, rng}}, nil
}

// evalMap evaluates expr to a map of strings; null values are dropped.
func evalMap(expr hcl.Expression, ctx *hcl.EvalContext, what string) (map[string]item, hcl.Diagnostics) {
	out := map[string]item{}
	if obj, ok := expr.(*hclsyntax.ObjectConsExpr); ok {
		var diags hcl.Diagnostics
		for _, it := range obj.Items {
			k, ok, d := evalString(it.KeyExpr, ctx, what+" key")
			diags = append(diags, d...)
			if d.HasErrors() || !ok {
				continue
			}
			v, ok, d := evalString(it.ValueExpr, ctx, fmt.Sprintf("%s[%q]", what, k))
			diags = append(diags, d...)
			if d.HasErrors() || !ok {
				continue
			}
			out[k] = item{v, it.ValueExpr.Range()}
		}
		return out, diags
	}
	val, diags := expr.Value(ctx)
	if diags.HasErrors() || val.IsNull() {
		return out, diags
	}
	if !val.Type().IsMapType() && !val.Type().IsObjectType() {
		return out, append(diags, typeError(expr, what, "a map of strings"))
	}
	for it := val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if v.IsNull() {
			continue
		}
		s, err := primitiveString(v)
		if err != nil {
			return out, append(diags, typeError(expr, what, "a map of strings"))
		}
		out[k.AsString()] = item{s, expr.Range()}
	}
	return out, diags
}

// primitiveString converts a string, number or bool to its string form.
func primitiveString(v cty.Value) (string, error) {
	if !v.IsKnown() {
		return "", fmt.Errorf("unknown value")
	}
	switch v.Type() {
	case cty.String:
		return v.AsString(), nil
	case cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInt() {
			i, _ := bf.Int(nil)
			return i.String(), nil
		}
		return bf.Text('f', -1), nil
	case cty.Bool:
		if v.True() {
			return "true", nil
		}
		return "false", nil
	}
	return "", fmt.Errorf("not a primitive value")
}

func itemValues(items []item) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.val)
	}
	return out
}
