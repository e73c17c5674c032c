package build

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/runpod-workers/worker-github_runner/internal/imageref"
)

// Placeholders a cache spec may carry: {image} in the reference only,
// {variant} in the reference and in the scope and name attributes (a
// GitHub Actions cache per variant: type=gha,scope={variant}).
const (
	PlaceholderImage   = "{image}"
	PlaceholderVariant = "{variant}"
)

// variantAttrs are the attributes besides ref in which {variant} is
// replaced: a variant name is validated (letters, digits, '-', '_', '.').
var variantAttrs = []string{"scope", "name"}

// CacheSpec is one --cache-from or --cache-to value, parsed once from the
// user's flag: a cache type and its attributes. It is never turned back
// into a "k=v,k=v" string, so a value substituted into Ref (an image name
// from a variants file) stays one attribute whatever it contains.
type CacheSpec struct {
	Type  string            // registry (the default), gha, s3, local, ...
	Ref   string            // the registry reference (type=registry)
	Attrs map[string]string // every other attribute, as the user wrote it
}

var attrKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseCacheSpec reads a flag value: a bare reference, or comma-separated
// key=value attributes like BuildKit's (type=registry,ref=X,mode=max).
// Errors never quote an attribute's value (a token=, say); they name the
// attribute by key or position. A reference is shown quoted.
func ParseCacheSpec(s string) (CacheSpec, error) {
	spec := CacheSpec{Type: "registry", Attrs: map[string]string{}}
	if s == "" {
		return CacheSpec{}, errors.New("the value is empty: give a reference or type=...,ref=...")
	}
	if !strings.Contains(s, "=") {
		spec.Ref = s
		return spec, spec.checkTemplate()
	}
	seen := map[string]bool{}
	for i, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return CacheSpec{}, fmt.Errorf("attribute %d (attributes are separated by commas) is not key=value", i+1)
		case !attrKey.MatchString(k):
			return CacheSpec{}, fmt.Errorf("attribute %d: its key is empty or not made of letters, digits, '.', '_', '-'", i+1)
		case seen[k]:
			return CacheSpec{}, fmt.Errorf("attribute %s is given twice", k)
		}
		seen[k] = true
		switch k {
		case "type":
			spec.Type = v
		case "ref":
			spec.Ref = v
		default:
			spec.Attrs[k] = v
		}
	}
	switch {
	case !attrKey.MatchString(spec.Type):
		return CacheSpec{}, errors.New("type is empty or not a cache type (registry, gha, s3, local, ...)")
	case seen["ref"] && spec.Ref == "":
		return CacheSpec{}, errors.New("ref is empty")
	case spec.Type == "registry" && spec.Ref == "":
		return CacheSpec{}, errors.New("type=registry needs ref=REFERENCE")
	}
	return spec, spec.checkTemplate()
}

// checkTemplate refuses placeholders where they are not replaced, and a
// reference that is invalid before any expansion.
func (c CacheSpec) checkTemplate() error {
	for _, k := range slices.Sorted(maps.Keys(c.Attrs)) {
		v := c.Attrs[k]
		if strings.Contains(v, PlaceholderImage) || !slices.Contains(variantAttrs, k) && strings.Contains(v, PlaceholderVariant) {
			return fmt.Errorf("attribute %s: {image} is only replaced in the reference (ref=), {variant} there and in scope= and name=", k)
		}
	}
	if c.Ref == "" || strings.Contains(c.Ref, PlaceholderImage) || strings.Contains(c.Ref, PlaceholderVariant) {
		return nil
	}
	return CheckReference(c.Ref)
}

// Expand returns the spec for one variant: {image} and {variant} replaced
// in the reference, which must then be a valid image reference, and
// {variant} in scope and name.
func (c CacheSpec) Expand(image, variant string) (CacheSpec, error) {
	out := CacheSpec{Type: c.Type, Attrs: maps.Clone(c.Attrs)}
	for _, k := range variantAttrs {
		if v, ok := out.Attrs[k]; ok {
			out.Attrs[k] = strings.ReplaceAll(v, PlaceholderVariant, variant)
		}
	}
	if c.Ref == "" {
		return out, nil
	}
	out.Ref = strings.NewReplacer(PlaceholderImage, image, PlaceholderVariant, variant).Replace(c.Ref)
	if out.Ref != c.Ref {
		if err := CheckReference(out.Ref); err != nil {
			return CacheSpec{}, err
		}
	}
	return out, nil
}

// CheckReference accepts a reference in the Docker grammar (a name with an
// optional registry, tag and digest, a port in 1..65535), as
// go-containerregistry reads it too, and nothing else: no scheme, no ',',
// '=', quotes or spaces.
func CheckReference(ref string) error {
	if ref == "" {
		return errors.New("the cache reference is empty")
	}
	if len(ref) > 512 {
		return fmt.Errorf("cache reference %s is longer than 512 bytes", quoteRef(ref))
	}
	if why := imageref.Check(ref, imageref.Image); why != "" {
		return fmt.Errorf("cache reference %s is not a valid image reference: %s", quoteRef(ref), why)
	}
	return nil
}

// quoteRef shows a reference quoted, control characters escaped, capped.
func quoteRef(s string) string {
	if len(s) > 120 {
		return strconv.Quote(strings.ToValidUTF8(s[:120], "")) + "..."
	}
	return strconv.Quote(s)
}
