package variants

import (
	"slices"
	"strings"
	"testing"
)

const bumpSrc = `# The runner every variant installs.
variable "RUNNER_VERSION" {
  default = "2.337.0" # bumped by runner-bump
}

variable "RUNNER_SHA256" {
  description = "Runner tarball checksums per platform."
  type        = map(string)
  default = {
    "linux/amd64" = "aaaa"
    "linux/arm64" = "bbbb"
  }
}

runner {
  version = RUNNER_VERSION
  sha256  = RUNNER_SHA256
}
`

func TestRunnerDefaults(t *testing.T) {
	v, platforms, err := RunnerDefaults("v.hcl", []byte(bumpSrc))
	if err != nil || v != "2.337.0" || !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("got %q %q %v", v, platforms, err)
	}
}

func TestRunnerDefaultsRefusesWhatItCannotBump(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"no sums", "variable \"RUNNER_VERSION\" { default = \"2.1.0\" }\n", `v.hcl: runner-bump needs variable "RUNNER_VERSION" and variable "RUNNER_SHA256"`},
		{"computed version", strings.Replace(bumpSrc, `"2.337.0"`, `"2.${local.minor}.0"`, 1), "v.hcl: the default of RUNNER_VERSION must be a plain string"},
		{"sums not a map", strings.Replace(bumpSrc, `"linux/amd64" = "aaaa"`, `"linux/amd64" = upper("aaaa")`, 1), "v.hcl: the default of RUNNER_SHA256 must be a plain map"},
		{"not HCL", "variable {", "v.hcl:1"},
	} {
		if _, _, err := RunnerDefaults("v.hcl", []byte(c.src)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

func TestBumpRunnerRewritesOnlyTheDefaults(t *testing.T) {
	out, err := BumpRunner("v.hcl", []byte(bumpSrc), "2.338.0", map[string]string{"linux/amd64": "cccc", "linux/arm64": "dddd"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer(`"2.337.0"`, `"2.338.0"`, `"aaaa"`, `"cccc"`, `"bbbb"`, `"dddd"`).Replace(bumpSrc)
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	v, platforms, err := RunnerDefaults("v.hcl", out)
	if err != nil || v != "2.338.0" || len(platforms) != 2 {
		t.Errorf("the bumped file reads back as %q %q %v", v, platforms, err)
	}
}

func TestBumpRunnerRefusesNoSums(t *testing.T) {
	if _, err := BumpRunner("v.hcl", []byte(bumpSrc), "2.338.0", nil); err == nil || !strings.Contains(err.Error(), "v.hcl: no runner SHA-256 sums") {
		t.Errorf("got %v", err)
	}
}
