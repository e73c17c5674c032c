package variants

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// printed is a variant as `imagegen print` shows it (JSON), as a map.
func printed(t *testing.T, v *Variant) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Layer compression and attestations are variant fields: inherited like
// the others, printed, and gzip with nothing forced by default.
func TestCompressionAndAttestFields(t *testing.T) {
	src := `
variant "base" {
  abstract          = true
  compression       = "zstd"
  compression_level = 3
  force_compression = true
  attest            = ["type=provenance,mode=max", "type=sbom"]
}
variant "z" {
  inherits = ["base"]
  flavour  = "cpu"
  base     = "ubuntu:24.04"
  image    = "registry.example/team/worker"
  tags     = ["z"]
}
` + cpuVariant + tail
	m := mustLoad(t, src, Options{})
	z := printed(t, m.Find("z"))
	want := map[string]any{"compression": "zstd", "compression_level": 3.0, "force_compression": true,
		"attest": []any{"type=provenance,mode=max", "type=sbom"}}
	for k, w := range want {
		if !reflect.DeepEqual(z[k], w) {
			t.Errorf("z: %s = %#v, want %#v", k, z[k], w)
		}
	}
	cpu := printed(t, m.Find("cpu"))
	if cpu["compression"] != "gzip" {
		t.Errorf("default compression = %#v, want gzip", cpu["compression"])
	}
	for _, k := range []string{"compression_level", "force_compression", "attest"} {
		if _, ok := cpu[k]; ok {
			t.Errorf("cpu prints %s = %#v, want it left out", k, cpu[k])
		}
	}
}

// --set reaches the compression fields; a malformed value is a usage error.
func TestSetCompression(t *testing.T) {
	m := mustLoad(t, cpuVariant+tail, Options{Sets: []string{"cpu.compression=zstd", "cpu.compression_level=19", "cpu.force_compression=true"}})
	got := printed(t, m.Find("cpu"))
	if got["compression"] != "zstd" || got["compression_level"] != 19.0 || got["force_compression"] != true {
		t.Errorf("after --set: %v %v %v", got["compression"], got["compression_level"], got["force_compression"])
	}
	for _, s := range []string{"cpu.compression_level=high", "cpu.force_compression=maybe", "cpu.compression+=zstd"} {
		_, text, diags := load(t, cpuVariant+tail, Options{Sets: []string{s}})
		if !diags.HasErrors() || !strings.Contains(text, "Invalid --set") {
			t.Errorf("--set %s: want Invalid --set, got:\n%s", s, text)
		}
	}
	_, text, _ := load(t, cpuVariant+tail, Options{Sets: []string{"cpu.compression_level=12"}})
	if !strings.Contains(text, "Invalid compression level") || !strings.Contains(text, "--set cpu.compression_level=12") {
		t.Errorf("a --set level out of range: %s", text)
	}
}

func TestCompressionAndAttestErrors(t *testing.T) {
	with := func(attrs string) string {
		return strings.Replace(cpuVariant, `tags    = ["dev-cpu"]`, `tags = ["x"]`+"\n  "+attrs, 1) + tail
	}
	for _, tc := range []errorCase{
		{name: "unknown algorithm", src: with(`compression = "lz4"`), summary: "Invalid compression", pos: "test.hcl:7:17"},
		{name: "gzip level too high", src: with("compression = \"gzip\"\n  compression_level = 10"), summary: "Invalid compression level", pos: "test.hcl:8:23"},
		{name: "default gzip level too high", src: with("compression_level = 12"), summary: "Invalid compression level", pos: "test.hcl:7:23"},
		{name: "zstd level too high", src: with("compression = \"zstd\"\n  compression_level = 23"), summary: "Invalid compression level", pos: "test.hcl:8:23"},
		{name: "negative level", src: with("compression = \"zstd\"\n  compression_level = -1"), summary: "Invalid compression level", pos: "test.hcl:8:23"},
		{name: "level of uncompressed", src: with("compression = \"uncompressed\"\n  compression_level = 1"), summary: "Invalid compression level", pos: "test.hcl:8:23"},
		{name: "fractional level", src: with("compression_level = 2.5"), summary: "Incorrect attribute value type", pos: "test.hcl:7:23"},
		{name: "force without compression", src: with("force_compression = true"), summary: "force_compression without compression", pos: "test.hcl:7:23"},
		{name: "unknown attestation type", src: with(`attest = ["type=provenance", "type=slsa"]`), summary: "Invalid attestation", pos: "test.hcl:7:32"},
		{name: "attestation without type", src: with(`attest = ["mode=max"]`), summary: "Invalid attestation", pos: "test.hcl:7:13"},
		{name: "unknown attestation key", src: with(`attest = ["type=provenance,mode=max,sign=yes"]`), summary: "Invalid attestation", pos: "test.hcl:7:13"},
		{name: "bad provenance mode", src: with(`attest = ["type=provenance,mode=full"]`), summary: "Invalid attestation", pos: "test.hcl:7:13"},
		{name: "bad sbom generator", src: with(`attest = ["type=sbom,generator=Not A Ref"]`), summary: "Invalid attestation", pos: "test.hcl:7:13"},
		{name: "sbom key on provenance", src: with(`attest = ["type=provenance,generator=a/b:c"]`), summary: "Invalid attestation", pos: "test.hcl:7:13"},
		{name: "attestation of two lines", src: with(`attest = ["type=provenance,mode=max\ntype=sbom,generator=x y"]`), summary: "Invalid attestation", pos: "test.hcl:7:13"},
		{name: "attestation key twice", src: with(`attest = ["type=sbom,type=provenance"]`), summary: "Invalid attestation", pos: "test.hcl:7:13"},
		{name: "duplicate attestation type", src: with(`attest = ["type=sbom", "type=sbom,disabled=true"]`), summary: "Duplicate attestation", pos: "test.hcl:7:26"},
	} {
		t.Run(tc.name, func(t *testing.T) { expectError(t, tc) })
	}
}

func TestParseAttestation(t *testing.T) {
	for in, want := range map[string]Attestation{
		"type=provenance,mode=max":              {Type: "provenance", Attrs: map[string]string{"mode": "max"}},
		"type=sbom":                             {Type: "sbom", Attrs: map[string]string{}},
		"type=sbom,disabled=true":               {Type: "sbom", Disabled: true, Attrs: map[string]string{}},
		"TYPE=provenance, mode=min":             {Type: "provenance", Attrs: map[string]string{"mode": "min"}},
		`type=sbom,"generator=a.example/s:1"`:   {Type: "sbom", Attrs: map[string]string{"generator": "a.example/s:1"}},
		"type=provenance,version=v0.2,mode=max": {Type: "provenance", Attrs: map[string]string{"mode": "max", "version": "v0.2"}},
	} {
		got, err := ParseAttestation(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseAttestation(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, wantErr := range map[string]string{
		"":                           "type",
		"type=provenance,mode":       "KEY=VALUE",
		"type=sbom,disabled=perhaps": "disabled",
		"type=provenance,version=v3": "version",
		`type=sbom,generator="a`:     "",
	} {
		if _, err := ParseAttestation(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseAttestation(%q) error = %v, want one about %q", in, err, wantErr)
		}
	}
	a, _ := ParseAttestation("type=provenance,version=v1,mode=max")
	if got := a.String(); got != "type=provenance,mode=max,version=v1" {
		t.Errorf("String() = %q", got)
	}
}

// Flag entries replace the variant's entry of the same type; disabled
// ones switch it off.
func TestMergeAttestations(t *testing.T) {
	parse := func(ss ...string) []Attestation {
		var out []Attestation
		for _, s := range ss {
			a, err := ParseAttestation(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, a)
		}
		return out
	}
	got := MergeAttestations(parse("type=provenance,mode=max", "type=sbom"), parse("type=sbom,disabled=true", "type=provenance,mode=min"))
	if want := parse("type=provenance,mode=min"); !reflect.DeepEqual(got, want) {
		t.Errorf("merge = %+v, want %+v", got, want)
	}
	got = MergeAttestations(nil, parse("type=sbom,generator=a.example/s:1"))
	if len(got) != 1 || got[0].String() != "type=sbom,generator=a.example/s:1" {
		t.Errorf("merge onto none = %+v", got)
	}
}

// An attestation is one CSV record with each key once: a second line or
// a repeated key (type included) is an error, never silently dropped or
// last-one-wins.
func TestParseAttestationOneRecord(t *testing.T) {
	for in, want := range map[string]string{
		"type=provenance,mode=max\ntype=sbom":                 "one line only",
		"type=provenance,mode=max\r\ntype=sbom,generator=x y": "one line only",
		"type=sbom\r":                            "one line only",
		"type=sbom,type=provenance":              `key "type" is given twice`,
		"type=provenance,mode=min,mode=max":      `key "mode" is given twice`,
		"type=sbom,disabled=true,DISABLED=false": `key "disabled" is given twice`,
	} {
		if a, err := ParseAttestation(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAttestation(%q) = %+v, %v; want an error about %q", in, a, err, want)
		}
	}
}

// Keys and values carry no control character and no value is longer than
// maxAttestValue: errors say which key and where, and never echo the
// whole value.
func TestParseAttestationHostileValues(t *testing.T) {
	long := strings.Repeat("b", 200<<10)
	for in, want := range map[string]string{
		"type=provenance,builder-id=a\x07b":   "builder-id: control character U+0007 at character 29",
		"type=provenance,builder-id=\x1b[31m": "builder-id: control character U+001B at character 28",
		"type=sbom,gen\x00erator=a/b:c":       "control character U+0000 at character 14",
		"type=provenance,builder-id=" + long:  "builder-id=… is 204800 bytes long; at most 1024",
		"type=sbom,generator=":                `type=sbom: generator="" is not an image reference`,
	} {
		_, err := ParseAttestation(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAttestation(%.60q) error = %v; want one about %q", in, err, want)
			continue
		}
		if len(err.Error()) > 400 {
			t.Errorf("ParseAttestation(%.60q): error of %d bytes", in, len(err.Error()))
		}
	}
	if _, err := ParseAttestation("type=provenance,builder-id=" + strings.Repeat("b", 1024)); err != nil {
		t.Errorf("a builder-id of 1024 bytes: %v", err)
	}
}

// compression = "" (in the file or by --set) is an error saying the
// allowed values, not a silent gzip; null is unset (gzip).
func TestEmptyCompression(t *testing.T) {
	with := func(attrs string) string {
		return strings.Replace(cpuVariant, `tags    = ["dev-cpu"]`, `tags = ["x"]`+"\n  "+attrs, 1) + tail
	}
	expectError(t, errorCase{name: "empty", src: with(`compression = ""`), summary: "Invalid compression", pos: "test.hcl:7:17"})
	_, text, _ := load(t, with(`compression = ""`), Options{})
	if !strings.Contains(text, `"gzip" (the default), "zstd" or "uncompressed"`) {
		t.Errorf("empty compression: %s", text)
	}
	_, text, diags := load(t, cpuVariant+tail, Options{Sets: []string{"cpu.compression="}})
	if !diags.HasErrors() || !strings.Contains(text, "Invalid compression") || !strings.Contains(text, "--set cpu.compression=") {
		t.Errorf("--set cpu.compression=: %s", text)
	}
	m := mustLoad(t, with(`compression = null`), Options{})
	if got := m.Find("cpu").Compression; got != CompressionGzip {
		t.Errorf("compression = null: %q, want gzip", got)
	}
}

// A level belongs to its algorithm: --set VARIANT.compression=ALG to
// another algorithm drops the level the file gave (unless --set gives one
// too), --set VARIANT.compression_level= (empty) unsets it, and a child
// that inherits a level it cannot use is told how to drop it.
func TestCompressionLevelFollowsAlgorithm(t *testing.T) {
	src := `
variant "base" {
  abstract          = true
  compression       = "zstd"
  compression_level = 19
}
variant "z" {
  inherits = ["base"]
  flavour  = "cpu"
  base     = "ubuntu:24.04"
  image    = "registry.example/team/worker"
  tags     = ["z"]
}
` + cpuVariant + tail
	for sets, want := range map[string]string{
		"z.compression=uncompressed":                      "uncompressed/<nil>",
		"z.compression=gzip":                              "gzip/<nil>",
		"z.compression=zstd":                              "zstd/19",
		"z.compression_level=":                            "zstd/<nil>",
		"z.compression_level=3 z.compression=gzip":        "gzip/3",
		"z.compression=gzip z.compression_level=4":        "gzip/4",
		"z.compression=uncompressed z.compression_level=": "uncompressed/<nil>",
	} {
		m, text, diags := load(t, src, Options{Sets: strings.Fields(sets)})
		if diags.HasErrors() {
			t.Errorf("--set %s: %s", sets, text)
			continue
		}
		z := m.Find("z")
		got := z.Compression + "/<nil>"
		if z.CompressionLevel != nil {
			got = fmt.Sprintf("%s/%d", z.Compression, *z.CompressionLevel)
		}
		if got != want {
			t.Errorf("--set %s: %s, want %s", sets, got, want)
		}
	}
	child := strings.Replace(src, `tags     = ["z"]`, `tags     = ["z"]`+"\n  compression = \"uncompressed\"", 1)
	_, text, _ := load(t, child, Options{})
	if !strings.Contains(text, "compression_level = null") || !strings.Contains(text, "--set z.compression_level=") {
		t.Errorf("an inherited level with uncompressed: %s", text)
	}
	mustLoad(t, strings.Replace(child, `compression = "uncompressed"`, "compression = \"uncompressed\"\n  compression_level = null", 1), Options{})
}
