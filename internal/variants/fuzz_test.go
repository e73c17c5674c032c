package variants

import (
	"os"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the whole pipeline: parse, evaluate,
// expand, validate, format diagnostics. It must never panic, and it must
// either return a matrix or at least one error.
func FuzzLoad(f *testing.F) {
	if real, err := os.ReadFile("../../variants.hcl"); err == nil {
		f.Add(real)
	}
	f.Add([]byte(cpuVariant + tail))
	f.Add([]byte(`variant "m" { matrix = { a = ["1","2"] } exclude = [{a="1"}] include = [{a="3"}] name = "m-${a}" flavour = "cpu" base = "b" image = "r/i" tags = [a] }` + tail))
	f.Add([]byte(`variable "A" { default = B }` + "\n" + `variable "B" { default = A }`))
	f.Add([]byte(`variant "a" { inherits = ["a"] }`))
	f.Add([]byte("variant \"x\" {\n tags = [\n}"))
	f.Fuzz(func(t *testing.T, src []byte) {
		m, files, diags := Load([]Source{{Name: "fuzz.hcl", Data: src}}, Options{
			LookupEnv: func(string) (string, bool) { return "", false },
			Sets:      []string{"*.labels.k=v"},
		})
		_ = FormatDiagnostics(files, diags)
		if m == nil && !diags.HasErrors() {
			t.Fatal("no matrix and no error")
		}
		if m != nil && diags.HasErrors() {
			t.Fatal("a matrix despite errors")
		}
	})
}
