package variants

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

var (
	digestA = "sha256:" + sumA
	digestB = "sha256:" + sumB
	digestC = "sha256:" + strings.Repeat("c", 64)
)

// A matrix whose base is a template, pinned by its resolved reference.
const pinnedSrc = `
variable "UBUNTU" {
  default = "24.04"
}
pins = {
  "docker.io/library/ubuntu:24.04"          = "` + "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + `"
  "gcr.io/kaniko-project/executor:v1.23.2" = "` + "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" + `"
}
variant "cpu" {
  flavour = "cpu"
  base    = "ubuntu:${UBUNTU}"
  image   = "registry.example/team/worker"
  tags    = ["dev-cpu"]
}
variant "digest" {
  flavour = "cpu"
  base    = "ubuntu:24.04@` + "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" + `"
  image   = "registry.example/team/worker"
  tags    = ["dev-digest"]
}
` + tail

func TestPinsApplyToResolvedReferences(t *testing.T) {
	m, text, diags := load(t, pinnedSrc, Options{})
	if diags.HasErrors() {
		t.Fatal(text)
	}
	cpu, dig := m.Find("cpu"), m.Find("digest")
	if cpu.Base != "ubuntu:24.04@"+digestA || cpu.Kaniko.Image != "gcr.io/kaniko-project/executor:v1.23.2@"+digestB {
		t.Errorf("cpu: base %s, kaniko %s", cpu.Base, cpu.Kaniko.Image)
	}
	if dig.Base != "ubuntu:24.04@"+digestC {
		t.Errorf("a base with a digest of its own became %s", dig.Base)
	}
	// golang:1.26.8 (DefaultGolang) has no pin: one warning names it.
	if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || !strings.Contains(diags[0].Detail, "golang:1.26.8") {
		t.Errorf("want one warning naming golang:1.26.8, got:\n%s", text)
	}
}

// An override that changes a reference finds no pin: unpinned, with a
// warning naming it, never the digest of the old tag.
func TestOverriddenReferenceIsUnpinned(t *testing.T) {
	m, text, diags := load(t, pinnedSrc, Options{Vars: []string{"UBUNTU=25.04"}})
	if diags.HasErrors() {
		t.Fatal(text)
	}
	if got := m.Find("cpu").Base; got != "ubuntu:25.04" {
		t.Errorf("base = %s, want ubuntu:25.04 unpinned", got)
	}
	if strings.Count(text, "warning:") != 1 || !strings.Contains(text, "ubuntu:25.04") {
		t.Errorf("want one warning naming ubuntu:25.04:\n%s", text)
	}
}

func TestNoPinsAndImageRefs(t *testing.T) {
	m, text, diags := load(t, pinnedSrc, Options{NoPins: true})
	if diags.HasErrors() || len(diags) != 0 {
		t.Fatal(text)
	}
	if got := m.Find("cpu").Base; got != "ubuntu:24.04" {
		t.Errorf("NoPins: base %s", got)
	}
	want := "gcr.io/kaniko-project/executor:v1.23.2 golang:1.26.8 ubuntu:24.04"
	if got := strings.Join(ImageRefs(m), " "); got != want {
		t.Errorf("ImageRefs = %s, want %s", got, want)
	}
}

// Without any pin, nothing warns (the project's file has none yet).
func TestNoPinsNoWarning(t *testing.T) {
	_, text, diags := load(t, cpuVariant+tail, Options{})
	if len(diags) != 0 {
		t.Errorf("unexpected diagnostics:\n%s", text)
	}
}

func TestHostilePins(t *testing.T) {
	entry := func(k, v string) string { return "pins = {\n  " + k + " = " + v + "\n}\n" + cpuVariant + tail }
	var huge strings.Builder
	huge.WriteString("pins = {\n")
	for i := range maxPins + 1 {
		fmt.Fprintf(&huge, "  \"r%d:t\" = %q\n", i, digestA)
	}
	huge.WriteString("}\n" + cpuVariant + tail)
	long := strings.Repeat("x", 200<<10)
	for name, tc := range map[string]struct{ src, summary, pos, notIn string }{
		"short digest":     {entry(`"ubuntu:24.04"`, `"sha256:abc"`), "Invalid pin digest", "test.hcl:2:20", ""},
		"upper case":       {entry(`"ubuntu:24.04"`, `"sha256:`+strings.ToUpper(sumA)+`"`), "Invalid pin digest", "test.hcl:2:20", ""},
		"no sha256 prefix": {entry(`"ubuntu:24.04"`, `"`+sumA+`"`), "Invalid pin digest", "test.hcl:2:20", ""},
		"key with digest":  {entry(`"ubuntu:24.04@`+digestA+`"`, `"`+digestA+`"`), "Invalid pin", "test.hcl:2:3", ""},
		"key without tag":  {entry(`"ubuntu"`, `"`+digestA+`"`), "Invalid pin", "test.hcl:2:3", ""},
		"control chars":    {entry(`"ubuntu:24.04\u001b[2J"`, `"`+digestA+`"`), "Invalid pin", "test.hcl:2:3", "\x1b"},
		"variable value":   {entry(`"ubuntu:24.04"`, `UBUNTU`), "Invalid pin digest", "test.hcl:2:20", ""},
		"not a map":        {"pins = \"ubuntu:24.04\"\n" + cpuVariant + tail, "Invalid pins", "test.hcl:1:8", ""},
		"duplicate":        {"pins = {\n  \"ubuntu:24.04\" = \"" + digestA + "\"\n  \"docker.io/library/ubuntu:24.04\" = \"" + digestB + "\"\n}\n" + cpuVariant + tail, "Duplicate pin", "test.hcl:3:3", ""},
		"huge map":         {huge.String(), "Too many pins", "test.hcl:1:8", ""},
		"huge value":       {entry(`"ubuntu:24.04"`, `"`+long+`"`), "Invalid pin digest", "test.hcl:2:20", long[:1000]},
	} {
		t.Run(name, func(t *testing.T) {
			expectError(t, errorCase{src: tc.src, summary: tc.summary, pos: tc.pos})
			_, text, _ := load(t, tc.src, Options{})
			if len(text) > 8<<10 || (tc.notIn != "" && strings.Contains(text, tc.notIn)) {
				t.Errorf("diagnostics echo the input (%d bytes):\n%.2000s", len(text), text)
			}
		})
	}
}

func TestWritePinsKeepsEveryOtherByte(t *testing.T) {
	orig, err := os.ReadFile("../../variants.hcl")
	if err != nil {
		t.Fatal(err)
	}
	src := Source{Name: "variants.hcl", Data: orig}
	pins := map[string]string{"ubuntu:24.04": digestA, "golang:1.26.8": digestB}
	out, err := WritePins(src, pins)
	if err != nil {
		t.Fatal(err)
	}
	rest, ok := bytes.CutPrefix(out, orig)
	wantRest := "\n" + PinsComment + "\npins = {\n  \"golang:1.26.8\" = \"" + digestB + "\"\n  \"ubuntu:24.04\"  = \"" + digestA + "\"\n}\n"
	if !ok || string(rest) != wantRest {
		t.Fatalf("created pins: the file is not the original plus\n%s\ngot the tail:\n%s", wantRest, rest)
	}
	m, _, diags := Load([]Source{{Name: "variants.hcl", Data: out}}, Options{LookupEnv: env()})
	if diags.HasErrors() || m.Find("cpu").Base != "ubuntu:24.04@"+digestA {
		t.Fatalf("the written file: %v", diags)
	}
	again, err := WritePins(Source{Name: "variants.hcl", Data: out}, pins)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("writing the same pins again changed the file (%v)", err)
	}
	// A moved digest and a pin no longer used: only the pins change.
	edited := bytes.Replace(out, []byte("# The scaler:"), []byte("# The scaler (edited comment):"), 1)
	moved, err := WritePins(Source{Name: "variants.hcl", Data: edited}, map[string]string{"ubuntu:24.04": digestC})
	if err != nil {
		t.Fatal(err)
	}
	want := slicesConcat(edited[:len(edited)-len(rest)], "\n"+PinsComment+"\npins = {\n  \"ubuntu:24.04\" = \""+digestC+"\"\n}\n")
	if !bytes.Equal(moved, want) {
		t.Fatalf("updated pins:\n%s", moved)
	}
}

func slicesConcat(b []byte, s string) []byte { return append(append([]byte{}, b...), s...) }

// A pins attribute in the middle of a file, with comments around and a
// comment after the closing brace, is rewritten in place, its comments
// kept.
func TestWritePinsInPlace(t *testing.T) {
	src := "# head\npins = { # old\n  \"ubuntu:24.04\" = \"" + digestA + "\"\n} # tail comment\n\n# rest\n" + cpuVariant + tail
	out, err := WritePins(Source{Name: "t.hcl", Data: []byte(src)}, map[string]string{"ubuntu:24.04": digestB, "golang:1.26.8": digestC})
	if err != nil {
		t.Fatal(err)
	}
	want := "# head\npins = { # old\n  \"golang:1.26.8\" = \"" + digestC + "\"\n  \"ubuntu:24.04\"  = \"" + digestB + "\"\n} # tail comment\n\n# rest\n" + cpuVariant + tail
	if string(out) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
	pins, diags := FilePins(Source{Name: "t.hcl", Data: out})
	if diags.HasErrors() || len(pins) != 2 {
		t.Fatalf("FilePins: %v %v", pins, diags)
	}
	if p, _ := pins.Lookup("docker.io/library/golang:1.26.8"); p.Digest != digestC || p.Range.Start.Line != 3 {
		t.Errorf("golang pin: %+v", p)
	}
}

// Comments inside the map survive a rewrite: a changed digest replaces
// only its value, a removed pin goes with its line, a new one is added in
// sorted position (issue 17, review finding 3).
func TestWritePinsKeepsCommentsInsideTheMap(t *testing.T) {
	src := "pins = {\n" +
		"  # the CPU base\n" +
		"  \"ubuntu:24.04\" = \"" + digestA + "\" # LTS\n" +
		"  /* gone soon */\n" +
		"  \"old:1\" = \"" + digestB + "\" # removed with its line\n" +
		"  # the toolchain, keep it in step with go.mod\n" +
		"  \"zz/golang:1.26.8\" = \"" + digestB + "\"\n" +
		"  # trailing note\n" +
		"}\n" + cpuVariant + tail
	out, err := WritePins(Source{Name: "t.hcl", Data: []byte(src)},
		map[string]string{"ubuntu:24.04": digestC, "zz/golang:1.26.8": digestB, "nvidia/cuda:12": digestA})
	if err != nil {
		t.Fatal(err)
	}
	want := "pins = {\n" +
		"  \"nvidia/cuda:12\" = \"" + digestA + "\"\n" +
		"  # the CPU base\n" +
		"  \"ubuntu:24.04\" = \"" + digestC + "\" # LTS\n" +
		"  /* gone soon */\n" +
		"  # the toolchain, keep it in step with go.mod\n" +
		"  \"zz/golang:1.26.8\" = \"" + digestB + "\"\n" +
		"  # trailing note\n" +
		"}\n" + cpuVariant + tail
	if string(out) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
}

// Registry hosts are case-insensitive: DOCKER.IO/library/ubuntu:24.04 is
// ubuntu:24.04's pin, and ImageRefs spells the host in lower case
// (finding 7).
func TestPinsHostCase(t *testing.T) {
	src := strings.Replace(pinnedSrc, `base    = "ubuntu:${UBUNTU}"`, `base    = "DOCKER.IO/library/ubuntu:${UBUNTU}"`, 1)
	m, text, diags := load(t, src, Options{})
	if diags.HasErrors() {
		t.Fatal(text)
	}
	if got := m.Find("cpu").Base; got != "DOCKER.IO/library/ubuntu:24.04@"+digestA {
		t.Errorf("base = %s, want it pinned to %s", got, digestA)
	}
	m, text, diags = load(t, src, Options{NoPins: true})
	if diags.HasErrors() {
		t.Fatal(text)
	}
	if got := strings.Join(ImageRefs(m), " "); !strings.Contains(got, "docker.io/library/ubuntu:24.04") || strings.Contains(got, "DOCKER") {
		t.Errorf("ImageRefs = %s", got)
	}
}

// The SBOM generator is pulled by every build with type=sbom: it is an
// image reference to pin, and its pin sets the generator (finding 8).
func TestPinsSBOMGenerator(t *testing.T) {
	withAttest := func(attest string) string {
		return strings.Replace(pinnedSrc, `tags    = ["dev-cpu"]`, `tags    = ["dev-cpu"]
  attest  = [`+attest+`]`, 1)
	}
	scanner := "docker/buildkit-syft-scanner:stable-1"
	for _, tc := range []struct{ attest, ref string }{
		{`"type=provenance,mode=max", "type=sbom"`, scanner},
		{`"type=sbom,generator=registry.example/syft:1"`, "registry.example/syft:1"},
	} {
		m, text, diags := load(t, withAttest(tc.attest), Options{NoPins: true})
		if diags.HasErrors() {
			t.Fatal(text)
		}
		if got := ImageRefs(m); !slices.Contains(got, tc.ref) {
			t.Errorf("%s: ImageRefs = %v, want %s in it", tc.attest, got, tc.ref)
		}
		src := strings.Replace(withAttest(tc.attest), "pins = {\n", "pins = {\n  \""+tc.ref+"\" = \""+digestC+"\"\n", 1)
		m, text, diags = load(t, src, Options{})
		if diags.HasErrors() {
			t.Fatal(text)
		}
		want := "type=sbom,generator=" + tc.ref + "@" + digestC
		if got := m.Find("cpu").Attest; !slices.Contains(got, want) {
			t.Errorf("%s: attest = %q, want %s in it", tc.attest, got, want)
		}
	}
	// sbom off or disabled: no generator pulled.
	m, text, diags := load(t, withAttest(`"type=sbom,disabled=true"`), Options{NoPins: true})
	if diags.HasErrors() {
		t.Fatal(text)
	}
	if got := ImageRefs(m); slices.Contains(got, scanner) {
		t.Errorf("disabled sbom: ImageRefs = %v", got)
	}
}

// A map on one line, or an empty one, is written anew.
func TestWritePinsOneLineMap(t *testing.T) {
	for _, src := range []string{
		"pins = { \"ubuntu:24.04\" = \"" + digestA + "\", \"old:1\" = \"" + digestB + "\" }\n",
		"pins = {}\n",
	} {
		out, err := WritePins(Source{Name: "t.hcl", Data: []byte(src + cpuVariant + tail)}, map[string]string{"ubuntu:24.04": digestC})
		if err != nil {
			t.Fatal(err)
		}
		want := "pins = {\n  \"ubuntu:24.04\" = \"" + digestC + "\"\n}\n" + cpuVariant + tail
		if string(out) != want {
			t.Errorf("%q: got\n%s", src, out)
		}
	}
}

// A new pin goes where a removed one was.
func TestWritePinsReplacesARemovedLine(t *testing.T) {
	src := "pins = {\n  \"a:1\" = \"" + digestA + "\"\n  \"b:1\" = \"" + digestB + "\"\n}\n" + cpuVariant + tail
	out, err := WritePins(Source{Name: "t.hcl", Data: []byte(src)}, map[string]string{"a:1": digestA, "ab:1": digestC})
	if err != nil {
		t.Fatal(err)
	}
	want := "pins = {\n  \"a:1\"  = \"" + digestA + "\"\n  \"ab:1\" = \"" + digestC + "\"\n}\n" + cpuVariant + tail
	if string(out) != want {
		t.Errorf("got\n%s", out)
	}
}

// An attestation given beside the variants (build's --attest) is pinned
// as theirs are, in a copy; a generator the pins lack is named (issue 17).
func TestPinAttestation(t *testing.T) {
	pins, diags := FilePins(Source{Name: "v.hcl", Data: []byte(`pins = {
  "docker/buildkit-syft-scanner:stable-1" = "` + digestA + `"
  "registry.example/syft:1" = "` + digestB + `"
}`)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for in, want := range map[string]string{
		"type=sbom": "type=sbom,generator=docker/buildkit-syft-scanner:stable-1@" + digestA,
		"type=sbom,generator=registry.example/syft:1":                         "type=sbom,generator=registry.example/syft:1@" + digestB,
		"type=sbom,generator=registry.example/syft:1@" + digestC:              "type=sbom,generator=registry.example/syft:1@" + digestC,
		"type=sbom,disabled=true":                                             "type=sbom,disabled=true",
		"type=provenance,mode=max":                                            "type=provenance,mode=max",
		"type=sbom,generator=registry.example/other:2":                        "type=sbom,generator=registry.example/other:2 unpinned registry.example/other:2",
		"type=sbom,generator=DOCKER.IO/docker/buildkit-syft-scanner:stable-1": "type=sbom,generator=DOCKER.IO/docker/buildkit-syft-scanner:stable-1@" + digestA,
	} {
		a, err := ParseAttestation(in)
		if err != nil {
			t.Fatal(err)
		}
		pinned, unpinned := pins.PinAttestation(a)
		got := pinned.String()
		if unpinned != "" {
			got += " unpinned " + unpinned
		}
		if got != want || a.String() != in {
			t.Errorf("%s: %s, want %s (given now %s)", in, got, want, a.String())
		}
	}
	if _, unpinned := (Pins{}).PinAttestation(Attestation{Type: AttestSBOM}); unpinned != "" {
		t.Errorf("without pins, %s is called unpinned", unpinned)
	}
}
