package variants

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/runpod-workers/worker-github_runner/internal/imageref"
)

// tagUse is where a variant writes a tag.
type tagUse struct {
	v   *Variant
	rng *hcl.Range
}

func (u tagUse) where() string {
	if u.rng != nil {
		return rangeString(*u.rng)
	}
	if set := u.v.setBy["tags"]; set != "" {
		return "--set " + set
	}
	return u.v.Source
}

// duplicateTags reports every tag that more than one variant writes: the
// build would tag both images in turn, and the last would win silently.
func duplicateTags(vs []*Variant) hcl.Diagnostics {
	var diags hcl.Diagnostics
	seen := map[string]tagUse{}
	for _, v := range vs {
		mine := map[string]bool{}
		for i, t := range v.Tags {
			key := imageref.Normalised(v.ref(t))
			if mine[key] {
				continue // the same variant listing a tag twice is harmless
			}
			mine[key] = true
			use := tagUse{v, v.listAt("tags", i)}
			first, ok := seen[key]
			if !ok {
				seen[key] = use
				continue
			}
			diags = append(diags, v.errorf("tags", use.rng, "Duplicate tag",
				"writes %s, which variant %q writes too (%s); a tag can name only one image.",
				short(v.ref(t)), first.v.Name, EscapeControl(first.where())))
		}
	}
	return diags
}
