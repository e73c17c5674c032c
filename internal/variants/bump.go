package variants

import (
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// RunnerDefaults reads the defaults of RUNNER_VERSION and RUNNER_SHA256 in
// the variants file src (named file in errors), without evaluating anything
// else: the runner version and the platforms RUNNER_SHA256 lists, sorted.
// Both defaults must be literals (a string and a map) for a bump to rewrite
// them.
func RunnerDefaults(file string, src []byte) (version string, platforms []string, err error) {
	f, diags := hclsyntax.ParseConfig(src, file, hcl.InitialPos)
	if diags.HasErrors() {
		return "", nil, diags
	}
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "variable" || len(b.Labels) != 1 {
			continue
		}
		attr, ok := b.Body.Attributes["default"]
		if !ok {
			continue
		}
		switch b.Labels[0] {
		case "RUNNER_VERSION":
			if version, err = literalString(file, attr); err != nil {
				return "", nil, err
			}
		case "RUNNER_SHA256":
			if platforms, err = literalMapKeys(file, attr); err != nil {
				return "", nil, err
			}
		}
	}
	if version == "" || len(platforms) == 0 {
		return "", nil, fmt.Errorf("%s: runner-bump needs variable \"RUNNER_VERSION\" and variable \"RUNNER_SHA256\" with defaults (as the project's variants.hcl has)", file)
	}
	sort.Strings(platforms)
	return version, platforms, nil
}

func literalString(file string, attr *hclsyntax.Attribute) (string, error) {
	v, d := attr.Expr.Value(nil)
	if d.HasErrors() || v.Type() != cty.String {
		return "", fmt.Errorf("%s: the default of RUNNER_VERSION must be a plain string to bump it", file)
	}
	return v.AsString(), nil
}

func literalMapKeys(file string, attr *hclsyntax.Attribute) ([]string, error) {
	v, d := attr.Expr.Value(nil)
	if d.HasErrors() || !(v.Type().IsObjectType() || v.Type().IsMapType()) {
		return nil, fmt.Errorf("%s: the default of RUNNER_SHA256 must be a plain map to bump it", file)
	}
	var keys []string
	for it := v.ElementIterator(); it.Next(); {
		k, _ := it.Element()
		keys = append(keys, k.AsString())
	}
	return keys, nil
}

// BumpRunner rewrites the variants file src (named file in errors) to the
// runner release version: the default of RUNNER_VERSION becomes version and
// the default of RUNNER_SHA256 becomes sums (platform -> SHA-256), whole.
// Comments and layout elsewhere are kept; the result is formatted as
// `hclwrite` formats it.
func BumpRunner(file string, src []byte, version string, sums map[string]string) ([]byte, error) {
	if len(sums) == 0 {
		return nil, fmt.Errorf("%s: no runner SHA-256 sums to write", file)
	}
	f, diags := hclwrite.ParseConfig(src, file, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	sumVals := make(map[string]cty.Value, len(sums))
	for p, s := range sums {
		sumVals[p] = cty.StringVal(s)
	}
	for _, b := range f.Body().Blocks() {
		if b.Type() != "variable" || len(b.Labels()) != 1 {
			continue
		}
		switch b.Labels()[0] {
		case "RUNNER_VERSION":
			b.Body().SetAttributeValue("default", cty.StringVal(version))
		case "RUNNER_SHA256":
			b.Body().SetAttributeValue("default", cty.MapVal(sumVals))
		}
	}
	return hclwrite.Format(f.Bytes()), nil
}
