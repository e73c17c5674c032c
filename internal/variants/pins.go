package variants

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/runpod-workers/worker-github_runner/internal/imageref"
)

// Pins: the top-level attribute `pins` of a variants file maps image
// references, as the matrix resolves them, to the digests `imagegen pin`
// found for them:
//
//	pins = {
//	  "ubuntu:24.04" = "sha256:<64 hex>"
//	}
//
// A reference a build pulls (a base, the Go toolchain image, the Kaniko
// image) whose normalised form has a pin is built as ref@digest, tag kept.
// Pins are keyed by the resolved reference, not written into templates: an
// override (CUDA_VERSION=...) that changes a reference finds no pin and
// builds unpinned, with a warning, instead of building on the old digest.

// PinsAttribute is the name of the top-level pins attribute.
const PinsAttribute = "pins"

// PinsComment is the comment `imagegen pin` writes above a pins attribute
// it creates.
const PinsComment = "# Written by `imagegen pin`; `imagegen pin --check` reports stale or missing pins."

// maxPins bounds the pins map (the project pins five references).
const maxPins = 1000

var pinDigestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// Pin is one entry of a pins map.
type Pin struct {
	// Ref is the key as written (ubuntu:24.04).
	Ref string
	// Digest is sha256:<64 hex>.
	Digest string
	// Range is where the entry's key is written.
	Range hcl.Range
}

// Pins are the pins of the variants files by normalised reference
// (docker.io/library/ubuntu:24.04 for ubuntu:24.04).
type Pins map[string]Pin

// Lookup is the pin of ref (any spelling of it), if any.
func (p Pins) Lookup(ref string) (Pin, bool) {
	pin, ok := p[pinNorm(ref)]
	return pin, ok
}

// pinNorm is the form pins are compared in: normalised, with the tag
// latest when ref has none (ubuntu is docker.io/library/ubuntu:latest).
func pinNorm(ref string) string {
	named, err := reference.ParseNormalizedNamed(LowerHost(ref))
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(named).String()
}

// LowerHost is ref with its registry host, if it names one, in lower
// case: hosts are case-insensitive (DOCKER.IO/library/ubuntu:24.04 is
// docker.io/library/ubuntu:24.04); the path and tag are left as they are.
// A first component is a host as the reference grammar says: it has a dot
// or a colon, is localhost, or has an upper-case letter.
func LowerHost(ref string) string {
	first, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return ref
	}
	lower := strings.ToLower(first)
	if strings.ContainsAny(first, ".:") || lower == "localhost" || lower != first {
		return lower + "/" + rest
	}
	return ref
}

// withTag is ref, host in lower case, with the tag latest when it has no
// tag nor digest.
func withTag(ref string) string {
	ref = LowerHost(ref)
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil || pinNorm(ref) == named.String() {
		return ref
	}
	return ref + ":latest"
}

// Sorted are the pins sorted by reference as written.
func (p Pins) Sorted() []Pin {
	out := make([]Pin, 0, len(p))
	for _, pin := range p {
		out = append(out, pin)
	}
	slices.SortFunc(out, func(a, b Pin) int { return strings.Compare(a.Ref, b.Ref) })
	return out
}

// readPins reads and checks the pins attributes of the files (at most one
// each); a reference pinned twice is an error.
func readPins(attrs []*hcl.Attribute) (Pins, hcl.Diagnostics) {
	pins := Pins{}
	var diags hcl.Diagnostics
	for _, a := range attrs {
		diags = append(diags, readPinsAttr(a, pins)...)
	}
	return pins, diags
}

func pinError(rng hcl.Range, summary, format string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: rng.Ptr()}
}

func readPinsAttr(a *hcl.Attribute, pins Pins) hcl.Diagnostics {
	pairs, d := hcl.ExprMap(a.Expr)
	if d.HasErrors() {
		return hcl.Diagnostics{pinError(a.Expr.Range(), "Invalid pins",
			`pins must be a map of quoted references to digests, { "ubuntu:24.04" = "sha256:..." }, as `+"`imagegen pin`"+` writes it.`)}
	}
	if len(pairs) > maxPins {
		return hcl.Diagnostics{pinError(a.Expr.Range(), "Too many pins",
			"pins has %d entries; a variants file may pin at most %d references.", len(pairs), maxPins)}
	}
	var diags hcl.Diagnostics
	for _, kv := range pairs {
		pin, d := readPin(kv)
		if d != nil {
			diags = append(diags, d)
			continue
		}
		norm := pinNorm(pin.Ref)
		if prev, ok := pins[norm]; ok {
			diags = append(diags, pinError(pin.Range, "Duplicate pin",
				"%s is pinned already, as %s at %s.", short(pin.Ref), short(prev.Ref), rangeString(prev.Range)))
			continue
		}
		pins[norm] = pin
	}
	return diags
}

// readPin reads one entry: a quoted reference with a tag and no digest,
// and a literal sha256 digest.
func readPin(kv hcl.KeyValuePair) (Pin, *hcl.Diagnostic) {
	pin := Pin{Range: kv.Key.Range()}
	key, ok := literal(kv.Key)
	if !ok {
		return pin, pinError(pin.Range, "Invalid pin", "A pin's key is a quoted image reference with a tag, \"ubuntu:24.04\".")
	}
	if why := pinKeyProblem(key); why != "" {
		return pin, pinError(pin.Range, "Invalid pin", "The key %s is not a reference to pin: %s.", short(key), why)
	}
	digest, ok := literal(kv.Value)
	if !ok || !pinDigestRE.MatchString(digest) {
		what := "not a literal string"
		if ok {
			what = short(digest)
		}
		return pin, pinError(kv.Value.Range(), "Invalid pin digest",
			"The pin of %s is %s; a pin is \"sha256:\" and 64 lower-case hex digits.", short(key), what)
	}
	pin.Ref, pin.Digest = key, digest
	return pin, nil
}

// literal is the value of a constant string expression.
func literal(e hcl.Expression) (string, bool) {
	v, d := e.Value(nil)
	if d.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		return "", false
	}
	return v.AsString(), true
}

// pinKeyProblem says why s cannot be a pin's key, or "".
func pinKeyProblem(s string) string {
	if why := imageref.Check(s, imageref.Image); why != "" {
		return why
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return err.Error()
	}
	if _, ok := named.(reference.Digested); ok {
		return "it has a digest already; the key is the reference with its tag, the digest its value"
	}
	if _, ok := named.(reference.Tagged); !ok {
		return "it has no tag; pin repository:tag, as the variants use it"
	}
	return ""
}

// imageUse is a reference a variant holds, and whether its build pulls it
// (a scaler pulls no Kaniko image).
type imageUse struct {
	ref    *string
	pulled bool
}

func imageUses(v *Variant) []imageUse {
	return []imageUse{{&v.Base, true}, {&v.Golang.Image, true}, {&v.Kaniko.Image, !v.IsScaler()}}
}

func hasDigest(ref string) bool { return strings.Contains(ref, "@") }

// DefaultSBOMGenerator is the image BuildKit runs for type=sbom when the
// attestation names no generator=.
const DefaultSBOMGenerator = "docker/buildkit-syft-scanner:stable-1"

// sbomGenerator is the image the variant's SBOM attestation runs, and the
// index of its entry in v.Attest; ok is false when it makes no SBOM.
func sbomGenerator(v *Variant) (ref string, index int, ok bool) {
	for i, s := range v.Attest {
		a, err := ParseAttestation(s)
		if err != nil {
			continue
		}
		if g, ok := generatorOf(a); ok {
			return g, i, true
		}
	}
	return "", 0, false
}

// generatorOf is the image an attestation runs: its generator=, else
// BuildKit's default, for an enabled sbom entry; ok is false for others.
func generatorOf(a Attestation) (ref string, ok bool) {
	if a.Type != AttestSBOM || a.Disabled {
		return "", false
	}
	if g := a.Attrs["generator"]; g != "" {
		return g, true
	}
	return DefaultSBOMGenerator, true
}

// withGenerator is a copy of a naming generator.
func withGenerator(a Attestation, generator string) Attestation {
	a.Attrs = maps.Clone(a.Attrs)
	if a.Attrs == nil {
		a.Attrs = map[string]string{}
	}
	a.Attrs["generator"] = generator
	return a
}

// pinSBOMGenerator writes the generator of the variant's SBOM entry as
// ref@digest.
func pinSBOMGenerator(v *Variant, index int, pinned string) {
	a, err := ParseAttestation(v.Attest[index])
	if err != nil {
		return
	}
	v.Attest[index] = withGenerator(a, pinned).String()
}

// PinAttestation pins an attestation given beside the variants (build's
// --attest) as the variants' own are pinned: an sbom entry whose
// generator (BuildKit's default when it names none) carries no digest and
// has a pin gets generator=ref@digest, in a copy. unpinned is that
// generator when p has pins but none for it (then a is as given).
func (p Pins) PinAttestation(a Attestation) (pinned Attestation, unpinned string) {
	g, ok := generatorOf(a)
	if !ok || hasDigest(g) {
		return a, ""
	}
	if pin, ok := p.Lookup(g); ok {
		return withGenerator(a, g+"@"+pin.Digest), ""
	}
	if len(p) > 0 {
		return a, g
	}
	return a, ""
}

// pulledRefs are the references the variant's build pulls, as written,
// each with a function that pins it.
func pulledRefs(v *Variant) []pulledRef {
	var out []pulledRef
	for _, u := range imageUses(v) {
		if u.pulled {
			out = append(out, pulledRef{*u.ref, func(d string) { *u.ref += "@" + d }})
		}
	}
	if g, i, ok := sbomGenerator(v); ok {
		out = append(out, pulledRef{g, func(d string) { pinSBOMGenerator(v, i, g+"@"+d) }})
	}
	return out
}

type pulledRef struct {
	ref string
	pin func(digest string)
}

// apply pins every reference of the variants that has a pin and no digest
// of its own; with pins in the files, references a build pulls unpinned
// get one warning naming them.
func (p Pins) apply(vs []*Variant) hcl.Diagnostics {
	var unpinned []string
	for _, v := range vs {
		for _, u := range imageUses(v) {
			if pin, ok := p.Lookup(*u.ref); ok && !hasDigest(*u.ref) && !u.pulled {
				*u.ref += "@" + pin.Digest // a scaler's Kaniko image: not pulled, pinned all the same
			}
		}
		for _, r := range pulledRefs(v) {
			if hasDigest(r.ref) {
				continue
			}
			if pin, ok := p.Lookup(r.ref); ok {
				r.pin(pin.Digest)
			} else {
				unpinned = append(unpinned, r.ref)
			}
		}
	}
	if len(p) == 0 || len(unpinned) == 0 {
		return nil
	}
	slices.Sort(unpinned)
	unpinned = slices.Compact(unpinned)
	return hcl.Diagnostics{{
		Severity: hcl.DiagWarning,
		Summary:  "Unpinned images",
		Detail:   fmt.Sprintf("pins has no entry for %s: built on what the tag points at now. `imagegen pin` pins it (a variable or --set that changes a reference finds no pin).", strings.Join(unpinned, ", ")),
	}}
}

// ImageRefs are the references the builds of the matrix pull (bases, the Go
// toolchain image, the Kaniko image of worker variants, the SBOM generator
// of variants with an sbom attestation) that carry no
// digest of their own, with their tag (latest when they name none), one
// per normalised form, sorted. Load the matrix with Options.NoPins for the
// references pins are keyed by.
func ImageRefs(m *Matrix) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range m.Variants {
		for _, r := range pulledRefs(v) {
			if hasDigest(r.ref) || seen[pinNorm(r.ref)] {
				continue
			}
			seen[pinNorm(r.ref)] = true
			out = append(out, withTag(r.ref))
		}
	}
	slices.Sort(out)
	return out
}

// FilePins reads the pins of one variants source, without resolving the
// rest of it.
func FilePins(src Source) (Pins, hcl.Diagnostics) {
	a, diags := pinsAttr(src)
	if diags.HasErrors() {
		return nil, diags
	}
	var attrs []*hcl.Attribute
	if a != nil {
		attrs = append(attrs, a)
	}
	return readPins(attrs)
}

// pinsAttr is the pins attribute of a variants source, nil when it has
// none.
func pinsAttr(src Source) (*hcl.Attribute, hcl.Diagnostics) {
	if d := checkSource(src); d.HasErrors() {
		return nil, d
	}
	f, diags := hclsyntax.ParseConfig(src.Data, src.Name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	if a, ok := f.Body.(*hclsyntax.Body).Attributes[PinsAttribute]; ok {
		return a.AsHCLAttribute(), nil
	}
	return nil, nil
}

// WritePins rewrites the pins attribute of the variants source src to pins
// (reference -> digest, keys as written). Every other byte stays as it is,
// comments inside the map included: a changed digest replaces only its
// value, a removed pin goes with its line, a new one gets a line of its
// own in sorted position, and the attribute is then formatted (hclwrite).
// A file without the attribute gets it at its end, under PinsComment; a
// map laid out on one line is written anew. The result is read back: it
// must hold exactly pins.
func WritePins(src Source, pins map[string]string) ([]byte, error) {
	f, diags := hclsyntax.ParseConfig(src.Data, src.Name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var out []byte
	if a, ok := f.Body.(*hclsyntax.Body).Attributes[PinsAttribute]; ok {
		r := a.SrcRange
		text, ok := editPins(src.Data, a, pins)
		if !ok {
			text = bytes.TrimSuffix(pinsText(pins), []byte("\n"))
		}
		out = slices.Concat(src.Data[:r.Start.Byte], text, src.Data[r.End.Byte:])
	} else {
		if len(pins) == 0 {
			return src.Data, nil
		}
		out = append([]byte{}, src.Data...)
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, '\n')
		}
		out = slices.Concat(out, []byte("\n"+PinsComment+"\n"), pinsText(pins))
	}
	return out, checkWritten(Source{Name: src.Name, Data: out}, pins)
}

// pinEdit replaces the bytes [start, end) of the attribute's text.
type pinEdit struct {
	start, end int
	text       string
}

// editPins is the attribute a's text with its entries edited to pins,
// formatted; ok is false when the map is not laid out one entry a line
// with its braces on lines of their own (then it is written anew).
func editPins(data []byte, a *hclsyntax.Attribute, pins map[string]string) ([]byte, bool) {
	obj, ok := a.Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return nil, false
	}
	base := a.SrcRange.Start.Byte
	text := data[base:a.SrcRange.End.Byte]
	open := obj.OpenRange.End.Byte - base
	closeLine := pinLineStart(text, obj.SrcRange.End.Byte-1-base)
	if !onlySpace(text[closeLine : obj.SrcRange.End.Byte-1-base]) {
		return nil, false
	}
	var edits []pinEdit
	written := map[string]bool{}
	// keeps: where a line inserted after each kept entry goes (the first,
	// keyed "", after the opening brace's line).
	type kept struct {
		key   string
		after int
	}
	keeps := []kept{{"", pinLineEnd(text, open)}}
	for _, item := range obj.Items {
		key, _ := literal(item.KeyExpr)
		k0, v1 := item.KeyExpr.Range().Start.Byte-base, item.ValueExpr.Range().End.Byte-base
		ls, le := pinLineStart(text, k0), pinLineEnd(text, v1)
		if ls <= open || !onlySpace(text[ls:k0]) || !restOfLineIsComment(text[v1:le]) {
			return nil, false
		}
		digest, keep := pins[key]
		switch {
		case !keep:
			edits = append(edits, pinEdit{ls, le, ""})
		case !written[key]:
			v0 := item.ValueExpr.Range().Start.Byte - base
			edits = append(edits, pinEdit{v0, v1, strconv.Quote(digest)})
			keeps = append(keeps, kept{key, le})
		}
		written[key] = true
	}
	indent := "  "
	for _, key := range slices.Sorted(maps.Keys(pins)) {
		if written[key] {
			continue
		}
		at := keeps[0].after
		for _, k := range keeps[1:] {
			if k.key < key {
				at = max(at, k.after)
			}
		}
		edits = append(edits, pinEdit{at, at, indent + strconv.Quote(key) + " = " + strconv.Quote(pins[key]) + "\n"})
	}
	return applyEdits(text, edits), true
}

// applyEdits applies edits (which do not overlap; insertions at one place
// in the order given, before a removal starting there) and formats the
// result.
func applyEdits(text []byte, edits []pinEdit) []byte {
	slices.SortStableFunc(edits, func(a, b pinEdit) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return a.end - b.end
	})
	var out []byte
	at := 0
	for _, e := range edits {
		out = append(append(out, text[at:e.start]...), e.text...)
		at = e.end
	}
	out = append(out, text[at:]...)
	return bytes.TrimSuffix(hclwrite.Format(append(out, '\n')), []byte("\n"))
}

// pinLineStart is the offset of the start of the line holding offset i.
func pinLineStart(b []byte, i int) int { return bytes.LastIndexByte(b[:i], '\n') + 1 }

// pinLineEnd is the offset just past the newline ending the line holding
// offset i (len(b) on the last line).
func pinLineEnd(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(b)
}

func onlySpace(b []byte) bool { return len(bytes.TrimLeft(b, " \t")) == 0 }

// restOfLineIsComment: after an entry's value, its line holds nothing but
// an optional comma and a comment.
func restOfLineIsComment(b []byte) bool {
	b = bytes.TrimLeft(bytes.TrimPrefix(bytes.TrimLeft(b, " \t"), []byte(",")), " \t\r\n")
	return len(b) == 0 || b[0] == '#' || bytes.HasPrefix(b, []byte("//")) || bytes.HasPrefix(b, []byte("/*"))
}

// pinsText is `pins = { ... }` as hclwrite formats it.
func pinsText(pins map[string]string) []byte {
	vals := make(map[string]cty.Value, len(pins))
	for ref, digest := range pins {
		vals[ref] = cty.StringVal(digest)
	}
	m := cty.MapValEmpty(cty.String)
	if len(vals) > 0 {
		m = cty.MapVal(vals)
	}
	f := hclwrite.NewEmptyFile()
	f.Body().SetAttributeValue(PinsAttribute, m)
	return hclwrite.Format(f.Bytes())
}

// checkWritten reads the pins back from a rewritten file.
func checkWritten(src Source, want map[string]string) error {
	got, diags := FilePins(src)
	if diags.HasErrors() {
		return fmt.Errorf("%s: the rewritten pins do not read back (nothing written): %s", src.Name, diags.Error())
	}
	if len(got) != len(want) {
		return fmt.Errorf("%s: the rewritten file holds %d pins, not %d (nothing written)", src.Name, len(got), len(want))
	}
	for ref, digest := range want {
		if pin, ok := got.Lookup(ref); !ok || pin.Digest != digest {
			return fmt.Errorf("%s: the rewritten file does not pin %s to %s (nothing written)", src.Name, short(ref), digest)
		}
	}
	return nil
}
