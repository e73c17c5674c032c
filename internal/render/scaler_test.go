package render

import (
	"slices"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// The scaler variant is cmd/scaler on the distroless base as its nonroot
// user: no runner, no Kaniko, no packages, no CUDA, no worker.
func TestScalerDockerfile(t *testing.T) {
	m := realMatrix(t, variants.Options{Vars: []string{`PLATFORMS=["linux/amd64","linux/arm64"]`}})
	v := m.Find("scaler")
	if v == nil {
		t.Fatal("variants.hcl has no scaler variant")
	}
	plan, err := Variant(v)
	if err != nil {
		t.Fatal(err)
	}
	for form, df := range map[string][]byte{"self-contained": plan.Dockerfile, "prepared": plan.Prepared} {
		st, _ := stages(t, df)
		img := st[len(st)-1]
		if img.BaseName != "gcr.io/distroless/static-debian12:nonroot" {
			t.Errorf("%s: the image starts from %s", form, img.BaseName)
		}
		ins := instructions(t, df)
		if n := len(ins); n < 2 || ins[n-2] != "USER 65532:65532" || ins[n-1] != `ENTRYPOINT ["/usr/local/bin/scaler"]` {
			t.Errorf("%s: does not end with USER 65532 and the scaler's entrypoint: %q", form, ins[max(0, n-3):])
		}
		for _, bad := range []string{"kaniko", "actions-runner", "apt-get", "RUNNER_", "cmd/worker", "CUDA_VERSION", "runner-version"} {
			if strings.Contains(string(df), bad) {
				t.Errorf("%s: the scaler's Dockerfile has %q", form, bad)
			}
		}
	}
	if !strings.Contains(string(plan.Prepared), "\nCOPY scaler-linux-${TARGETARCH} /usr/local/bin/scaler\n") {
		t.Errorf("the prepared Dockerfile does not copy the scaler from the context:\n%s", plan.Prepared)
	}
}

// The root Dockerfile (docker build ., the RunPod Hub) holds the workers
// only: BUILD_TYPE=scaler would be no worker at all.
func TestRootLeavesOutTheScaler(t *testing.T) {
	m := realMatrix(t, variants.Options{})
	root, err := Root(m.Variants)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := stages(t, root)
	for _, s := range st {
		if s.Name == "variant-scaler" || s.Name == ScalerStage || s.Name == ScalerBuildStage {
			t.Errorf("root Dockerfile has stage %s", s.Name)
		}
	}
	if _, err := Root([]*variants.Variant{m.Find("scaler")}); err == nil {
		t.Error("Root of the scaler alone succeeded")
	}
	if !slices.ContainsFunc(m.Variants, (*variants.Variant).IsScaler) {
		t.Fatal("no scaler variant to leave out")
	}
}
