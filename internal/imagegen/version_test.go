package imagegen

import (
	"runtime/debug"
	"strings"
	"testing"
)

// imagegen --version prints the module version the binary was built from
// (go install ...@v1.2.3, or the VCS pseudo-version of a checkout).
func TestVersionFromBuildInfo(t *testing.T) {
	cases := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"release", &debug.BuildInfo{Main: debug.Module{Path: "github.com/runpod-workers/worker-github_runner", Version: "v1.2.3"}}, "v1.2.3"},
		{"checkout", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261127070000-78d4564abcde+dirty"}}, "v0.0.0-20261127070000-78d4564abcde+dirty"},
		{"devel", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"empty", &debug.BuildInfo{}, "dev"},
		{"no build info", nil, "dev"},
	}
	for _, c := range cases {
		if got := versionOf(c.bi, c.bi != nil); got != c.want {
			t.Errorf("%s: versionOf = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	code, out, errOut := run("--version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	bi, ok := debug.ReadBuildInfo()
	if want := "imagegen version " + versionOf(bi, ok) + "\n"; out != want {
		t.Errorf("--version printed %q, want %q", out, want)
	}
	if strings.Contains(out, "\n\n") {
		t.Errorf("--version printed %q", out)
	}
}
