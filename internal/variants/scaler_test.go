package variants

import (
	"slices"
	"testing"
)

// scalerVariant starts at line 2 of a snippet; attrs go on line 8.
func scalerVariant(attrs string) string {
	return `
variant "scaler" {
  flavour   = "scaler"
  base      = "gcr.io/distroless/static-debian12:nonroot"
  image     = "registry.example/team/scaler"
  platforms = ["linux/amd64", "linux/arm64"]
  tags      = ["dev-scaler"]
  ` + attrs + `
}
`
}

// A scaler variant is the matrix format's variant without the runner and
// Kaniko parts: it needs no runner checksum for its platforms.
func TestScalerVariantLoads(t *testing.T) {
	m := mustLoad(t, scalerVariant("")+tail, Options{})
	v := m.Find("scaler")
	if v == nil || !v.IsScaler() {
		t.Fatalf("no scaler variant in %v", names(m))
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(v.Platforms, want) {
		t.Errorf("platforms %v, want %v", v.Platforms, want)
	}
}

func TestScalerVariantErrors(t *testing.T) {
	tests := []errorCase{
		{name: "cuda", src: scalerVariant(`cuda = "12.6.3"`) + tail, summary: "Worker field on a scaler variant", pos: "test.hcl:8:10"},
		{name: "packages", src: scalerVariant(`packages = ["git"]`) + tail, summary: "Worker field on a scaler variant", pos: "test.hcl:8:14"},
		{name: "runner packages", src: scalerVariant(`runner_packages = ["zlib1g"]`) + tail, summary: "Worker field on a scaler variant", pos: "test.hcl:8:21"},
		{name: "steps", src: scalerVariant(`steps = ["RUN true"]`) + tail, summary: "Worker field on a scaler variant", pos: "test.hcl:8:11"},
		{name: "worker on scaler", src: scalerVariant("") + `
variant "w" {
  flavour = "cpu"
  base    = variant.scaler
  image   = "registry.example/team/worker"
  tags    = ["w"]
}` + tail, summary: "Worker built on the scaler", pos: "test.hcl:13:13"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expectError(t, tc) })
	}
}
