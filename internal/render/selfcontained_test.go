package render

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	dfi "github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// stages parses a Dockerfile into its stages.
func stages(t *testing.T, df []byte) ([]dfi.Stage, []dfi.ArgCommand) {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(df))
	if err != nil {
		t.Fatal(err)
	}
	st, args, err := dfi.Parse(res.AST, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, args
}

// binaryStages names, for a variant, the stage that compiles its binary,
// the stage a named context replaces, the command and the image's COPY.
func binaryStages(v *variants.Variant) (build, bin, cmd, copyLine string) {
	if v.IsScaler() {
		return ScalerBuildStage, ScalerStage, "./cmd/scaler", "COPY --from=scaler /scaler-linux-${TARGETARCH} /usr/local/bin/scaler"
	}
	return WorkerBuildStage, WorkerStage, "./cmd/worker", "COPY --from=worker /worker-linux-${TARGETARCH} /usr/local/bin/worker"
}

// Every rendered Dockerfile builds from the repository root on its own: a
// stage compiles cmd/worker (cmd/scaler for the scaler) with the pinned Go
// image on the build platform, with cache mounts, and the image copies the
// binary from the stage named WorkerStage (ScalerStage), which imagegen
// replaces with a named context.
func TestSelfContainedWorkerStage(t *testing.T) {
	m := realMatrix(t, variants.Options{})
	for _, v := range m.Variants {
		plan, err := Variant(v)
		if err != nil {
			t.Fatal(err)
		}
		buildName, binName, cmd, copyLine := binaryStages(v)
		st, _ := stages(t, plan.Dockerfile)
		var build, worker *dfi.Stage
		for i := range st {
			switch st[i].Name {
			case buildName:
				build = &st[i]
			case binName:
				worker = &st[i]
			}
		}
		if build == nil || worker == nil {
			t.Fatalf("%s: no %s and %s stages:\n%s", v.Name, buildName, binName, plan.Dockerfile)
		}
		if build.BaseName != "golang:1.26.8" || build.Platform != "$BUILDPLATFORM" {
			t.Errorf("%s: %s is FROM --platform=%s %s, want --platform=$BUILDPLATFORM golang:1.26.8", v.Name, buildName, build.Platform, build.BaseName)
		}
		df := string(plan.Dockerfile)
		for _, want := range []string{
			"--mount=type=cache,target=/go/pkg/mod", "--mount=type=cache,target=/root/.cache/go-build",
			"--mount=type=bind,target=/src", `GOOS="${TARGETOS}" GOARCH="${TARGETARCH}"`, "CGO_ENABLED=0",
			cmd, copyLine,
		} {
			if !strings.Contains(df, want) {
				t.Errorf("%s: Dockerfile lacks %q", v.Name, want)
			}
		}
		if worker.BaseName != "scratch" {
			t.Errorf("%s: the %s stage starts from %s, want scratch", v.Name, binName, worker.BaseName)
		}
		// The prepared form has neither stage nor the Go image.
		pst, _ := stages(t, plan.Prepared)
		for _, s := range pst {
			if s.Name == buildName || s.Name == binName || strings.Contains(s.BaseName, "golang") {
				t.Errorf("%s: the prepared Dockerfile has stage %s FROM %s", v.Name, s.Name, s.BaseName)
			}
		}
	}
}

// The root Dockerfile has one stage per variant; BUILD_TYPE (default gpu)
// names the one that is the image, so the seed's two commands work.
func TestRootDockerfile(t *testing.T) {
	m := realMatrix(t, variants.Options{})
	root, err := Root(m.Variants)
	if err != nil {
		t.Fatal(err)
	}
	st, args := stages(t, root)
	if len(args) != 1 || args[0].Args[0].Key != "BUILD_TYPE" || args[0].Args[0].Value == nil || *args[0].Args[0].Value != "gpu" {
		t.Errorf("global ARGs = %+v, want BUILD_TYPE=gpu", args)
	}
	var names []string
	for _, s := range st {
		names = append(names, s.Name)
	}
	for _, want := range []string{"kaniko", "worker-build", WorkerStage, "variant-gpu", "variant-cpu"} {
		if !slices.Contains(names, want) {
			t.Errorf("root Dockerfile lacks stage %s: %v", want, names)
		}
	}
	if last := st[len(st)-1]; last.BaseName != "variant-${BUILD_TYPE}" {
		t.Errorf("the last stage is FROM %s, want variant-${BUILD_TYPE}", last.BaseName)
	}
	// Each variant's stage is its own Dockerfile's image stage.
	for _, v := range m.Variants {
		plan, _ := Variant(v)
		vst, _ := stages(t, plan.Dockerfile)
		want := vst[len(vst)-1]
		for _, s := range st {
			if s.Name == "variant-"+v.Name && (s.BaseName != want.BaseName || len(s.Commands) != len(want.Commands)) {
				t.Errorf("stage variant-%s: FROM %s with %d commands, its Dockerfile FROM %s with %d", v.Name, s.BaseName, len(s.Commands), want.BaseName, len(want.Commands))
			}
		}
	}
	// Without a variant named gpu the first one is the default.
	cpu := m.Find("cpu")
	only, err := Root([]*variants.Variant{cpu})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(only), "\nARG BUILD_TYPE=cpu\n") {
		t.Errorf("a cpu-only matrix's root Dockerfile does not default to cpu")
	}
	if _, err := Root(nil); err == nil {
		t.Error("Root of no variants succeeded")
	}
}

// The image has the seed's kaniko command: /kaniko/executor with
// DOCKER_CONFIG defaulting to /kaniko/.docker, which the job's user owns.
func TestKanikoCommand(t *testing.T) {
	plan, err := Variant(realMatrix(t, variants.Options{}).Find("cpu"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(plan.Dockerfile)
	for _, want := range []string{
		"> /usr/local/bin/kaniko", "chmod 0755 /usr/local/bin/kaniko",
		`': "${DOCKER_CONFIG:=/kaniko/.docker}"'`, `'exec /kaniko/executor "$@"'`,
		"mkdir -p /kaniko/.docker", "chown runner:runner /kaniko/.docker",
		"COPY --from=kaniko /kaniko/executor /kaniko/executor",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
