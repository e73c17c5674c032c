package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A variants.hcl with pins (after a merged base-pin pull request) still
// builds in the local environment: its stand-ins are not the pinned
// images, and the env file's IMAGEGEN_NO_PINS=1 builds them by tag. Without
// it the build asks the mirror for the pinned digest and fails, so the
// pins are really there.
func TestPinnedFileBuildsOnTheStandIns(t *testing.T) {
	needDevenv(t)
	if devenv["IMAGEGEN_NO_PINS"] != "1" {
		t.Fatalf("the devenv's env file lacks IMAGEGEN_NO_PINS=1: %v", devenv)
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "variants.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "variants.hcl")
	pins := "\npins = {\n  \"gcr.io/distroless/static-debian12:nonroot\" = \"sha256:" + strings.Repeat("5", 64) + "\"\n}\n"
	if err := os.WriteFile(file, append(src, pins...), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := uniqueRegistry(t)
	run := func(noPins string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, imagegen, "-f", file, "build", "--push", "--progress", "plain", "scaler")
		cmd.Dir = repoRoot
		cmd.Env = os.Environ()
		for k, v := range devenv {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Env = append(cmd.Env, "REGISTRY="+reg, "IMAGEGEN_NO_PINS="+noPins)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("0"); err == nil || !strings.Contains(out, "sha256:"+strings.Repeat("5", 64)) {
		t.Fatalf("with the pin honoured the build did not ask for the pinned digest: %v\n%s", err, tail(out, 20))
	}
	if out, err := run("1"); err != nil {
		t.Fatalf("IMAGEGEN_NO_PINS=1: %v\n%s", err, tail(out, 30))
	}
}
