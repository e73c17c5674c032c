package variants

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "default"},
		{Name: "description"},
		{Name: "type"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition", Required: true},
		{Name: "error_message", Required: true},
	},
}

// variable is one declared `variable` block.
type variable struct {
	name        string
	block       *hcl.Block
	def         *hcl.Attribute
	typ         cty.Type // cty.DynamicPseudoType when no type was given
	typed       bool
	description string
	validations []*validation

	state int // 0 unresolved, 1 resolving, 2 done
	value cty.Value
}

type validation struct {
	condition hcl.Expression
	message   hcl.Expression
}

// variableScope resolves variables lazily, so a default may refer to other
// variables in any order, and reports cycles.
type variableScope struct {
	vars      map[string]*variable
	overrides map[string]override
	ctx       *hcl.EvalContext
}

// override is a value given from outside the file.
type override struct {
	raw    string
	source string // "--var" or "environment"
}

func declareVariables(blocks hcl.Blocks) (map[string]*variable, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	vars := map[string]*variable{}
	for _, b := range blocks {
		name := b.Labels[0]
		if !hclsyntax.ValidIdentifier(name) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid variable name",
				Detail:   fmt.Sprintf("%q is not a valid name: use letters, digits, underscores and dashes, starting with a letter.", name),
				Subject:  b.LabelRanges[0].Ptr(),
			})
			continue
		}
		if prev, ok := vars[name]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate variable",
				Detail:   fmt.Sprintf("Variable %q was already declared at %s.", name, rangeString(prev.block.DefRange)),
				Subject:  b.LabelRanges[0].Ptr(),
			})
			continue
		}
		content, d := b.Body.Content(variableSchema)
		diags = append(diags, d...)
		v := &variable{name: name, block: b, typ: cty.DynamicPseudoType}
		if a, ok := content.Attributes["default"]; ok {
			v.def = a
		}
		if a, ok := content.Attributes["description"]; ok {
			val, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			if !d.HasErrors() {
				if val.Type() != cty.String || val.IsNull() {
					diags = append(diags, typeError(a.Expr, "description", "a string"))
				} else {
					v.description = val.AsString()
				}
			}
		}
		if a, ok := content.Attributes["type"]; ok {
			t, d := typeexpr.TypeConstraint(a.Expr)
			diags = append(diags, d...)
			if !d.HasErrors() {
				v.typ, v.typed = t, true
			}
		}
		for _, vb := range content.Blocks {
			vc, d := vb.Body.Content(validationSchema)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			v.validations = append(v.validations, &validation{
				condition: vc.Attributes["condition"].Expr,
				message:   vc.Attributes["error_message"].Expr,
			})
		}
		vars[name] = v
	}
	return vars, diags
}

// resolveAll resolves every variable and runs validation blocks once all
// are known, so a condition may refer to any variable.
func (s *variableScope) resolveAll() hcl.Diagnostics {
	var diags hcl.Diagnostics
	names := make([]string, 0, len(s.vars))
	for n := range s.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		diags = append(diags, s.resolve(s.vars[n], nil)...)
	}
	if diags.HasErrors() {
		return diags
	}
	vals := map[string]cty.Value{}
	for _, n := range names {
		vals[n] = s.vars[n].value
	}
	s.ctx.Variables = vals
	for _, n := range names {
		diags = append(diags, s.validate(s.vars[n])...)
	}
	return diags
}

func (s *variableScope) resolve(v *variable, stack []string) hcl.Diagnostics {
	switch v.state {
	case 2:
		return nil
	case 1:
		chain := append(append([]string{}, stack...), v.name)
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Variable cycle",
			Detail:   fmt.Sprintf("The default of %q depends on itself: %s.", v.name, strings.Join(chain, " -> ")),
			Subject:  v.block.DefRange.Ptr(),
		}}
	}
	if len(stack) >= maxChain {
		v.value = cty.DynamicVal
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Variable chain too deep",
			Detail:   fmt.Sprintf("The default of %q depends on a chain of more than %d variables (%s -> ... -> %s).", stack[0], maxChain, stack[0], v.name),
			Subject:  v.block.DefRange.Ptr(),
		}}
	}
	v.state = 1
	defer func() { v.state = 2 }()
	stack = append(stack, v.name)

	if o, ok := s.overrides[v.name]; ok {
		val, err := parseOverride(o.raw, v)
		if err != nil {
			v.value = cty.DynamicVal
			return hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Invalid value for variable %q from %s", v.name, o.source),
				Detail:   fmt.Sprintf("%s. %s", err, typeHint(v)),
				Subject:  v.block.DefRange.Ptr(),
			}}
		}
		v.value = val
		return nil
	}
	if v.def == nil {
		v.value = cty.NullVal(v.typ)
		if !v.typed {
			v.value = cty.NullVal(cty.String)
		}
		return nil
	}

	var diags hcl.Diagnostics
	deps := map[string]cty.Value{}
	for _, tr := range v.def.Expr.Variables() {
		dep, ok := s.vars[tr.RootName()]
		if !ok {
			continue // reported as an unknown variable by the evaluation below
		}
		d := s.resolve(dep, stack)
		diags = append(diags, d...)
		deps[dep.name] = dep.value
	}
	if diags.HasErrors() {
		v.value = cty.DynamicVal
		return diags
	}
	ctx := &hcl.EvalContext{Variables: deps, Functions: s.ctx.Functions}
	val, d := v.def.Expr.Value(ctx)
	diags = append(diags, d...)
	if d.HasErrors() {
		v.value = cty.DynamicVal
		return diags
	}
	if v.typed {
		cv, err := convert.Convert(val, v.typ)
		if err != nil {
			v.value = cty.DynamicVal
			return append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid default value for variable",
				Detail:   fmt.Sprintf("The default of %q does not match its type %s: %s.", v.name, typeexpr.TypeString(v.typ), err),
				Subject:  v.def.Expr.Range().Ptr(),
			})
		}
		val = cv
	}
	v.value = val
	return diags
}

func (s *variableScope) validate(v *variable) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, val := range v.validations {
		res, d := val.condition.Value(s.ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		res, err := convert.Convert(res, cty.Bool)
		if err != nil || res.IsNull() {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid validation condition",
				Detail:   "A validation condition must be true or false.",
				Subject:  val.condition.Range().Ptr(),
			})
			continue
		}
		if res.True() {
			continue
		}
		msg, d := val.message.Value(s.ctx)
		diags = append(diags, d...)
		text := "validation failed"
		if !d.HasErrors() {
			if m, err := convert.Convert(msg, cty.String); err == nil && !m.IsNull() {
				text = m.AsString()
			}
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid value for variable %q", v.name),
			Detail:   fmt.Sprintf("%s (value: %s).", strings.TrimSuffix(text, "."), showValue(v.value)),
			Subject:  val.condition.Range().Ptr(),
		})
	}
	return diags
}

// parseOverride turns a string from the environment or --var into a value of
// the variable's type: strings stay as they are, numbers and bools are
// converted, lists, maps and objects are JSON.
func parseOverride(raw string, v *variable) (cty.Value, error) {
	want := v.typ
	if !v.typed {
		want = cty.String
		if v.def != nil {
			if dv, d := v.def.Expr.Value(nil); !d.HasErrors() && !dv.IsNull() {
				want = dv.Type()
			}
		}
	}
	if want.IsPrimitiveType() || want == cty.DynamicPseudoType {
		if want == cty.DynamicPseudoType {
			want = cty.String
		}
		val, err := convert.Convert(cty.StringVal(raw), want)
		if err != nil {
			return cty.NilVal, fmt.Errorf("%q is not a %s", raw, want.FriendlyName())
		}
		return val, nil
	}
	implied, err := ctyjson.ImpliedType([]byte(raw))
	if err != nil {
		return cty.NilVal, fmt.Errorf("%q is not valid JSON: %v", raw, err)
	}
	val, err := ctyjson.Unmarshal([]byte(raw), implied)
	if err != nil {
		return cty.NilVal, fmt.Errorf("%q is not valid JSON: %v", raw, err)
	}
	val, err = convert.Convert(val, want)
	if err != nil {
		return cty.NilVal, fmt.Errorf("%q is not a %s: %v", raw, want.FriendlyName(), err)
	}
	return val, nil
}

func typeHint(v *variable) string {
	if v.typed && !v.typ.IsPrimitiveType() {
		return fmt.Sprintf("Variable %q has type %s: give it as JSON, for example '[\"a\",\"b\"]' for a list.", v.name, typeexpr.TypeString(v.typ))
	}
	return ""
}

func showValue(v cty.Value) string {
	if !v.IsWhollyKnown() {
		return "unknown"
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}

func rangeString(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func typeError(expr hcl.Expression, what, want string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Incorrect attribute value type",
		Detail:   fmt.Sprintf("Inappropriate value for %s: %s required.", what, want),
		Subject:  expr.Range().Ptr(),
	}
}
