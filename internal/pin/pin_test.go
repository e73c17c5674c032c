package pin

import (
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

func TestMirrors(t *testing.T) {
	m := Mirrors{}
	for _, s := range []string{"docker.io=127.0.0.1:5000", "gcr.io=mirror.example/gcr/"} {
		if err := m.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	for ref, want := range map[string]string{
		"ubuntu:24.04":                          "127.0.0.1:5000/library/ubuntu:24.04",
		"index.docker.io/nvidia/cuda:12":        "127.0.0.1:5000/nvidia/cuda:12",
		"gcr.io/kaniko-project/executor:v1":     "mirror.example/gcr/kaniko-project/executor:v1",
		"ghcr.io/osscontainertools/kaniko:v1.0": "ghcr.io/osscontainertools/kaniko:v1.0",
	} {
		got, err := m.lookupRef(ref)
		if err != nil || got.String() != want {
			t.Errorf("%s: looked up as %v (%v), want %s", ref, got, err, want)
		}
	}
	for _, bad := range []string{"docker.io", "=x", "docker.io=", "docker.io/library=127.0.0.1:5000", "docker.io=UPPER/Case", "index.docker.io=127.0.0.1:6000"} {
		if err := m.Set(bad); err == nil {
			t.Errorf("--mirror %q accepted", bad)
		}
	}
}

func TestCompare(t *testing.T) {
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	src := `pins = {
  "docker.io/library/ubuntu:24.04" = "` + a + `"
  "golang:1.26.8" = "` + a + `"
  "old:1" = "` + b + `"
}`
	pins, diags := variants.FilePins(variants.Source{Name: "v.hcl", Data: []byte(src)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got := Compare([]string{"golang:1.26.8", "new:2", "ubuntu:24.04"}, []string{a, b, b}, pins)
	var lines []string
	for _, e := range got {
		lines = append(lines, string(e.State)+" "+e.Problem()+"|"+e.Note())
	}
	want := []string{
		"stale docker.io/library/ubuntu:24.04: pinned sha256:aaaaaaaaaaaa…, registry now has sha256:bbbbbbbbbbbb…|",
		"current |",
		"missing new:2: not pinned (registry has sha256:bbbbbbbbbbbb…)|",
		"unused |pin old:1: no build of this matrix pulls it; kept (imagegen pin --prune removes it)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	table := Table(got, true)
	if len(table) != 3 || table["docker.io/library/ubuntu:24.04"] != b || table["new:2"] != b || table["golang:1.26.8"] != a {
		t.Errorf("table %v: keys as the file spells them, every pulled reference, at the registry's digest", table)
	}
}

// An unused pin stays unless pruning, and says so; pruning removes it
// and says that.
func TestTableKeepsUnusedUnlessPruning(t *testing.T) {
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	src := `pins = {
  "ubuntu:24.04" = "` + a + `"
  "old:1" = "` + b + `"
}`
	pins, diags := variants.FilePins(variants.Source{Name: "v.hcl", Data: []byte(src)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got := Compare([]string{"ubuntu:24.04"}, []string{b}, pins)
	if table := Table(got, false); len(table) != 2 || table["old:1"] != b || table["ubuntu:24.04"] != b {
		t.Errorf("Table(no prune) = %v", table)
	}
	if table := Table(got, true); len(table) != 1 || table["ubuntu:24.04"] != b {
		t.Errorf("Table(prune) = %v", table)
	}
	if c := got[0].Change(); c != "old:1: pin sha256:bbbbbbbbbbbb… removed (no build of this matrix pulls it)" {
		t.Errorf("Change of the unused pin = %q", c)
	}
}
