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

// Normalize replaces each placeholder's value in b by {{Name}}.
func Normalize(b []byte, ps ...Placeholder) []byte {
	s := string(b)
	for _, p := range ps {
		if p.Value != "" {
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
