package variants

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
)

var settableScalars = []string{"flavour", "base", "cuda", "image", "compression", "compression_level", "force_compression"}
var settableLists = []string{"platforms", "tags", "packages", "runner_packages"}

// SettableFields lists what --set can change, for help texts.
func SettableFields() []string {
	out := append(append([]string{}, settableScalars...), settableLists...)
	return append(out, "labels.KEY", "args.KEY")
}

// applySets applies --set VARIANT.FIELD=VALUE (or +=, to append to a list or
// add to a map). VARIANT is a glob over resolved variant names; list values
// are comma-separated.
func applySets(vs []*Variant, sets []string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, s := range sets {
		pattern, field, key, val, appendMode, err := parseSet(s)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid --set", Detail: fmt.Sprintf("--set %s: %v", s, err)})
			continue
		}
		if _, err := path.Match(pattern, ""); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid --set", Detail: fmt.Sprintf("--set %s: bad pattern %q: %v.", s, pattern, err)})
			continue
		}
		matched := 0
		var names []string
		for _, v := range vs {
			names = append(names, v.Name)
			if ok, _ := path.Match(pattern, v.Name); !ok {
				continue
			}
			matched++
			if v.setBy == nil {
				v.setBy = map[string]string{}
			}
			v.setBy[field] = s
			setField(v, field, key, val, appendMode)
		}
		if matched == 0 {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "--set matches no variant",
				Detail:   fmt.Sprintf("--set %s: no variant matches %q%s; variants are %s.", s, pattern, suggest(pattern, names), strings.Join(names, ", ")),
			})
		}
	}
	return diags
}

func parseSet(s string) (pattern, field, key, val string, appendMode bool, err error) {
	lhs, val, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", "", "", false, fmt.Errorf("expected VARIANT.FIELD=VALUE")
	}
	if strings.HasSuffix(lhs, "+") {
		appendMode, lhs = true, strings.TrimSuffix(lhs, "+")
	}
	for _, m := range []string{"labels", "args"} {
		if i := strings.LastIndex(lhs, "."+m+"."); i > 0 {
			key = lhs[i+len(m)+2:]
			if key == "" {
				return "", "", "", "", false, fmt.Errorf("%s needs a key: VARIANT.%s.KEY=VALUE", m, m)
			}
			return lhs[:i], m, key, val, appendMode, nil
		}
	}
	i := strings.LastIndex(lhs, ".")
	if i <= 0 {
		return "", "", "", "", false, fmt.Errorf("expected VARIANT.FIELD=VALUE, where FIELD is one of %s", strings.Join(SettableFields(), ", "))
	}
	pattern, field = lhs[:i], lhs[i+1:]
	for _, f := range settableScalars {
		if f == field {
			if appendMode {
				return "", "", "", "", false, fmt.Errorf("+= works on lists and maps, not on %s", field)
			}
			if err := checkTypedSet(field, val); err != nil {
				return "", "", "", "", false, err
			}
			return pattern, field, "", val, false, nil
		}
	}
	for _, f := range settableLists {
		if f == field {
			return pattern, field, "", val, appendMode, nil
		}
	}
	return "", "", "", "", false, fmt.Errorf("unknown field %q%s; settable fields are %s", field, suggest(field, SettableFields()), strings.Join(SettableFields(), ", "))
}

func setField(v *Variant, field, key, val string, appendMode bool) {
	list := func(dst *[]string) {
		var items []string
		for _, p := range strings.Split(val, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		if appendMode {
			*dst = append(*dst, items...)
		} else {
			*dst = items
		}
	}
	switch field {
	case "flavour":
		v.Flavour = val
	case "base":
		v.Base, v.BaseVariant = val, ""
	case "cuda":
		v.CUDA = val
	case "image":
		v.Image = val
	case "compression":
		// A level belongs to its algorithm: switching algorithms drops
		// the file's level unless --set gave one.
		if _, levelSet := v.setBy["compression_level"]; val != v.Compression && !levelSet {
			v.CompressionLevel = nil
		}
		v.Compression = val
	case "compression_level":
		v.CompressionLevel = nil // empty: the algorithm's default
		if n, err := strconv.Atoi(val); err == nil {
			v.CompressionLevel = &n // checkTypedSet checked it
		}
	case "force_compression":
		v.ForceCompression, _ = strconv.ParseBool(val)
	case "platforms":
		list(&v.Platforms)
	case "tags":
		list(&v.Tags)
	case "packages":
		list(&v.Packages)
	case "runner_packages":
		list(&v.RunnerPackages)
	case "labels":
		v.Labels[key] = val
	case "args":
		v.Args[key] = val
	}
}

// checkTypedSet checks the value of a --set field that is not a string.
func checkTypedSet(field, val string) error {
	switch field {
	case "compression_level":
		if _, err := strconv.Atoi(val); err != nil && val != "" {
			return fmt.Errorf("compression_level must be a whole number (or empty for the algorithm's default), not %s", short(val))
		}
	case "force_compression":
		if _, err := strconv.ParseBool(val); err != nil {
			return fmt.Errorf("force_compression must be true or false, not %s", short(val))
		}
	}
	return nil
}

// suggest returns ` (did you mean "x"?)` for a near miss, else "".
func suggest(given string, options []string) string {
	best, bestDist := "", 3
	for _, o := range options {
		if d := levenshtein.Distance(given, o, nil); d < bestDist {
			best, bestDist = o, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}
