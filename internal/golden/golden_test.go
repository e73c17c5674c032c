package golden

import (
	"os"
	"path/filepath"
	"testing"
)

func TestNormalize(t *testing.T) {
	d := "sha256:" + "ab12" + "000000000000000000000000000000000000000000000000000000000000"
	got := Normalize([]byte("FROM ubuntu:24.04@"+d+"\nRUN echo 2.338.0\n"),
		append(Runner("2.338.0", nil), Pins([]string{d})...)...)
	if want := "FROM ubuntu:24.04\nRUN echo {{RUNNER_VERSION}}\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := Normalize([]byte("x"), Placeholder{}); string(got) != "x" {
		t.Errorf("an empty placeholder changed %q", got)
	}
}

func TestFilePins(t *testing.T) {
	d := "sha256:" + "cd34" + "000000000000000000000000000000000000000000000000000000000000"
	p := filepath.Join(t.TempDir(), "variants.hcl")
	os.WriteFile(p, []byte("pins = {\n  \"ubuntu:24.04\" = \""+d+"\"\n}\n"), 0o644)
	ps := FilePins(t, p)
	if len(ps) != 1 || ps[0].Value != "@"+d || ps[0].Name != "" {
		t.Errorf("FilePins = %+v", ps)
	}
	os.WriteFile(p, []byte("# no pins\n"), 0o644)
	if ps := FilePins(t, p); len(ps) != 0 {
		t.Errorf("a file without pins gave %+v", ps)
	}
}
