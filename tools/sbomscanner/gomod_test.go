package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeGoBinary puts a copy of this test's executable at name under dir,
// with its module information (the "path", "mod", "dep" and "=>" lines Go
// embeds) replaced by info, padded with empty lines to the same length, as
// a hostile or odd build would carry.
func writeGoBinary(t *testing.T, dir, name, info string) {
	t.Helper()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("the test binary has no build information")
	}
	_, old, _ := strings.Cut(bi.String(), "\n") // the "go" line is not part of the embedded text
	if len(info) > len(old) {
		t.Fatalf("module information of %d bytes does not fit in %d", len(info), len(old))
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte(old)) == 0 {
		t.Fatalf("the module information %q is not in %s", old, exe)
	}
	b = bytes.ReplaceAll(b, []byte(old), []byte(info+strings.Repeat("\n", len(old)-len(info))))
	p := filepath.Join(dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestScanGoBuildInfoGivesValidPackages(t *testing.T) {
	stdlib := "pkg:golang/stdlib@" + strings.TrimPrefix(runtime.Version(), "go")
	tests := []struct {
		name    string
		info    string
		want    []string // purls, all of them
		warning string
		comment map[string]string // purl -> a part of its package comment
	}{
		{"no module path at all", "build\t-compiler=gc\n",
			[]string{stdlib}, `"/usr/local/bin/x": a Go binary without a valid main module ("": not a module path)`, nil},
		{"built from files", "path\tcommand-line-arguments\n",
			[]string{stdlib}, `"/usr/local/bin/x": a Go binary without a valid main module ("command-line-arguments": not a module path)`, nil},
		{"control characters in the main module path", "path\tex\x1bample.com/a\rb\nmod\tex\x1bample.com/a\rb\t(devel)\t\n",
			[]string{stdlib}, `("ex\x1bample.com/a\rb": not a module path)`, nil},
		{"an invalid dependency", "path\texample.com/app\nmod\texample.com/app\tv1.0.0\t\ndep\t\tv1.0.0\t\ndep\texample.com/ok\tv0.1.0\t\n",
			[]string{"pkg:golang/example.com/app@v1.0.0", stdlib, "pkg:golang/example.com/ok@v0.1.0"},
			`"/usr/local/bin/x": 1 Go modules skipped, the first: module "": not a module path`, nil},
		{"an invalid version", "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\texample.com/v\tv1\x07\t\n",
			[]string{"pkg:golang/example.com/app", stdlib}, `module "example.com/v" version "v1\a": not a semantic version`, nil},
		{"a local replace keeps the module it replaces", "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\texample.com/lib\tv1.2.3\t\n=>\t../lib\t\t\n",
			[]string{"pkg:golang/example.com/app", stdlib, "pkg:golang/example.com/lib@v1.2.3"}, "",
			map[string]string{"pkg:golang/example.com/lib@v1.2.3": `replaced by the local directory "../lib"`}},
		{"a module replace names the replacement", "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\texample.com/lib\tv1.2.3\t\n=>\texample.com/fork\tv1.2.4\t\n",
			[]string{"pkg:golang/example.com/app", stdlib, "pkg:golang/example.com/fork@v1.2.4"}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeGoBinary(t, root, "usr/local/bin/x", tc.info)
			res := scanWithin(t, 20*time.Second, root, defaultLimits)
			var got []string
			for _, p := range res.Packages {
				got = append(got, p.PURL)
			}
			slices.Sort(got)
			slices.Sort(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Errorf("purls %q, want %q", got, tc.want)
			}
			w := strings.Join(res.Warnings, "\n")
			if tc.warning == "" && w != "" || !strings.Contains(w, tc.warning) {
				t.Errorf("warnings %q, want %q", w, tc.warning)
			}
			for _, p := range documentPackages(t, res) {
				if p.Name == "" || strings.ContainsFunc(p.Name+p.VersionInfo, isControl) {
					t.Errorf("package %q %q: empty or with control characters", p.Name, p.VersionInfo)
				}
				for _, r := range p.ExternalRefs {
					if want, ok := tc.comment[r.ReferenceLocator]; ok && !strings.Contains(p.Comment, want) {
						t.Errorf("%s: comment %q, want %q", r.ReferenceLocator, p.Comment, want)
					}
				}
			}
		})
	}
}

type docPackage struct {
	Name, VersionInfo, Comment string
	ExternalRefs               []struct{ ReferenceLocator string }
}

// documentPackages is the packages of the SPDX document for res, as JSON
// readers see them.
func documentPackages(t *testing.T, res scanResult) []docPackage {
	t.Helper()
	b, err := json.Marshal(newDocumentForTest(res))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Packages []docPackage }
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Packages[1:] // the first is the root
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func newDocumentForTest(res scanResult) spdxDocument {
	return newDocument("sbom", res, time.Unix(0, 0), "")
}
