package variants

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/mod/semver"
)

// The golang block names the toolchain image the Dockerfiles compile the
// worker with; without one, the pinned default applies.
func TestGolangBlock(t *testing.T) {
	m := mustLoad(t, cpuVariant+tail+`
golang {
  version = "1.26.9"
  image   = "mirror.example/library/golang:1.26.9"
}
`, Options{})
	if got, want := m.Variants[0].Golang, (Golang{Version: "1.26.9", Image: "mirror.example/library/golang:1.26.9"}); got != want {
		t.Fatalf("golang = %+v, want %+v", got, want)
	}
	m = mustLoad(t, cpuVariant+tail, Options{})
	if got := m.Variants[0].Golang; got != DefaultGolang {
		t.Fatalf("golang without a block = %+v, want the default %+v", got, DefaultGolang)
	}
}

func TestGolangBlockErrors(t *testing.T) {
	for _, c := range []struct{ name, block, summary string }{
		{"bad version", `golang {
  version = "latest"
  image   = "golang:1.26.8"
}`, "Malformed Go version"},
		{"bad image", `golang {
  version = "1.26.8"
  image   = "golang:1.26.8,type=local"
}`, "Invalid Go image"},
		{"missing image", `golang {
  version = "1.26.8"
}`, "Missing required argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, text, diags := load(t, cpuVariant+tail+c.block+"\n", Options{})
			if !diags.HasErrors() || !strings.Contains(text, c.summary) {
				t.Fatalf("want %q, got:\n%s", c.summary, text)
			}
		})
	}
}

// The pinned Go (the default and variants.hcl's GO_VERSION) is at least the
// version go.mod needs: an older toolchain image cannot build the worker.
func TestGoVersionCoversGoMod(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	need := regexp.MustCompile(`(?m)^go ([0-9.]+)$`).FindSubmatch(mod)
	if need == nil {
		t.Fatal("go.mod has no go line")
	}
	hcl, err := os.ReadFile("../../variants.hcl")
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`(?s)variable "GO_VERSION" \{.*?default *= *"([^"]+)"`).FindSubmatch(hcl)
	if pinned == nil {
		t.Fatal("variants.hcl has no GO_VERSION default")
	}
	for what, v := range map[string]string{"DefaultGolang": DefaultGolang.Version, "variants.hcl GO_VERSION": string(pinned[1])} {
		if semver.Compare("v"+v, "v"+string(need[1])) < 0 {
			t.Errorf("%s is Go %s, older than go.mod's go %s", what, v, need[1])
		}
	}
}
