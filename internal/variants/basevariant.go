package variants

import (
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// baseVariantRef recognises `base = variant.NAME` (or variant["NAME"] for
// names that are not identifiers): the variant is built on that one.
func baseVariantRef(expr hcl.Expression) (string, bool) {
	tr, d := hcl.AbsTraversalForExpr(expr)
	if d.HasErrors() || tr.RootName() != "variant" || len(tr) != 2 {
		return "", false
	}
	switch s := tr[1].(type) {
	case hcl.TraverseAttr:
		return s.Name, true
	case hcl.TraverseIndex:
		if s.Key.Type() == cty.String && !s.Key.IsNull() {
			return s.Key.AsString(), true
		}
	}
	return "", false
}

// resolveBases links every variant built on another (BaseVariant) to it:
// Parent, and Base becomes the image the chain starts from. Unknown
// variants, cycles and platforms the parent lacks are errors at base.
func resolveBases(vs []*Variant) hcl.Diagnostics {
	byName := map[string]*Variant{}
	names := make([]string, 0, len(vs))
	for _, v := range vs {
		if _, dup := byName[v.Name]; !dup {
			byName[v.Name] = v
			names = append(names, v.Name)
		}
	}
	var diags hcl.Diagnostics
	for _, v := range vs {
		if v.BaseVariant == "" {
			continue
		}
		parent, ok := byName[v.BaseVariant]
		if !ok {
			diags = append(diags, v.errorf("base", v.at("base"), "Unknown base variant",
				"base names variant %s, which is not in the matrix%s; abstract variants are not built (use inherits for them).", short(v.BaseVariant), suggest(v.BaseVariant, names)))
			continue
		}
		if d := baseCycle(v, byName); d != nil {
			diags = append(diags, d)
			continue
		}
		if parent.IsScaler() && !v.IsScaler() {
			diags = append(diags, v.errorf("base", v.at("base"), "Worker built on the scaler",
				"base names variant %q, the scaler's image (flavour \"scaler\"), which has no runner to build on; use a gpu or cpu variant.", parent.Name))
			continue
		}
		v.Parent = parent
		for i, p := range v.Platforms {
			if !slices.Contains(parent.Platforms, p) {
				diags = append(diags, v.errorf("platforms", v.listAt("platforms", i), "Platform not in the base variant",
					"%s is not a platform of variant %q, which this one is built on.", short(p), parent.Name))
			}
		}
	}
	if diags.HasErrors() {
		return diags
	}
	for _, v := range vs {
		if v.Parent != nil {
			v.Base = v.Root().Base
		}
	}
	return diags
}

// baseCycle follows base = variant.X from v; a chain back to a variant
// already on it, or longer than maxChain, is an error at v's base.
func baseCycle(v *Variant, byName map[string]*Variant) *hcl.Diagnostic {
	chain := []string{v.Name}
	for p := v; p.BaseVariant != ""; {
		next, ok := byName[p.BaseVariant]
		if !ok {
			return nil // reported at p
		}
		chain = append(chain, next.Name)
		if next == v || slices.Contains(chain[:len(chain)-1], next.Name) {
			return v.errorf("base", v.at("base"), "Base variant cycle", "built on itself: %s.", strings.Join(chain, " -> "))
		}
		if len(chain) > maxChain {
			return v.errorf("base", v.at("base"), "Base variant chain too deep", "built on a chain of more than %d variants.", maxChain)
		}
		p = next
	}
	return nil
}

// Root is the first variant of the chain v is built on (v itself when it
// has no base variant).
func (v *Variant) Root() *Variant {
	r := v
	for i := 0; r.Parent != nil && i <= maxChain; i++ {
		r = r.Parent
	}
	return r
}

// Chain is the variants v is built on, the root first, v last.
func (v *Variant) Chain() []*Variant {
	var out []*Variant
	for p := v; p != nil && len(out) <= maxChain; p = p.Parent {
		out = append(out, p)
	}
	slices.Reverse(out)
	return out
}
