// Package golden compares test output with files under testdata/, and
// rewrites them when tests run with -update.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// Placeholder stands for a value that moves without the code changing
// (the runner version, its checksums): golden files hold {{Name}} where the
// output has Value, so `imagegen runner-bump` needs no golden edits.
type Placeholder struct {
	Name, Value string
}

// Runner gives the placeholders of a runner release: {{RUNNER_VERSION}}
// and {{RUNNER_SHA256 linux/amd64}} for each platform's sum.
func Runner(version string, sums map[string]string) []Placeholder {
	ps := []Placeholder{{Name: "RUNNER_VERSION", Value: version}}
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ps = append(ps, Placeholder{Name: "RUNNER_SHA256 " + k, Value: sums[k]})
	}
	return ps
}

// Pins gives placeholders that remove the digests `imagegen pin` wrote
// (`ubuntu:24.04@sha256:...` reads `ubuntu:24.04`), so a base-pin pull
// request needs no golden edits either. digests are "sha256:<hex>".
func Pins(digests []string) []Placeholder {
	ps := make([]Placeholder, 0, len(digests))
	for _, d := range digests {
		ps = append(ps, Placeholder{Value: "@" + d})
	}
	return ps
}

// FilePins gives the Pins placeholders of the pins the variants file at
// path holds (none when it has no pins attribute).
func FilePins(t testing.TB, path string) []Placeholder {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pins, diags := variants.FilePins(variants.Source{Name: path, Data: b})
	if diags.HasErrors() {
		t.Fatalf("pins of %s: %v", path, diags)
	}
	var digests []string
	for _, p := range pins.Sorted() {
		digests = append(digests, p.Digest)
	}
	return Pins(digests)
}

// Normalize replaces each placeholder's value in b by {{Name}}, or removes
// it when Name is empty.
func Normalize(b []byte, ps ...Placeholder) []byte {
	s := string(b)
	for _, p := range ps {
		switch {
		case p.Value == "":
		case p.Name == "":
			s = strings.ReplaceAll(s, p.Value, "")
		default:
			s = strings.ReplaceAll(s, p.Value, "{{"+p.Name+"}}")
		}
	}
	return []byte(s)
}

// Check compares got, normalized by ps, with testdata/<name>.golden.
func Check(t testing.TB, name string, got []byte, ps ...Placeholder) {
	t.Helper()
	got = Normalize(got, ps...)
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test -update accepts the new output):\n%s", name, p, got)
	}
}
