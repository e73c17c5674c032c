package imagegen

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/build"
)

// attestOf runs a build with the fake backend (which attests) and gives
// each variant's attestations as BuildKit would get them.
func attestOf(t *testing.T, args ...string) map[string][]string {
	t.Helper()
	fb := withFakeBackend(t)
	fb.caps.Attestations = true
	full := append([]string{"-f", realFile}, args[:len(args)-1]...)
	full = append(full, "build", "--builder", "fake", "--progress", "quiet", "--output", filepath.Join(t.TempDir(), "oci"),
		"--worker-bin", "linux/amd64="+staticBinary(t))
	full = append(full, strings.Fields(args[len(args)-1])...)
	code, o, e := run(full...)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	out := map[string][]string{}
	for _, r := range fb.reqs {
		out[r.Variant.Name] = []string{}
		for _, a := range r.Attest {
			out[r.Variant.Name] = append(out[r.Variant.Name], a.String())
		}
	}
	return out
}

// A release carries provenance (mode=max) and an SBOM for every variant;
// a dev build none; --attest replaces the variant's entry of its type,
// and disabled=true turns one off.
func TestAttestDefaultsAndFlags(t *testing.T) {
	both := []string{"type=provenance,mode=max", "type=sbom"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"release", []string{"--var", "RELEASE=v1.0.0", ""}, both},
		{"dev", []string{""}, []string{}},
		{"dev with flag", []string{"--attest type=provenance,mode=max"}, []string{"type=provenance,mode=max"}},
		{"release, flag replaces", []string{"--var", "RELEASE=v1.0.0", "--attest type=provenance,mode=min --attest type=sbom,disabled=true"}, []string{"type=provenance,mode=min"}},
		{"release, sbom generator", []string{"--var", "RELEASE=v1.0.0", "--attest type=sbom,generator=127.0.0.1:5000/scanner:1"},
			[]string{"type=provenance,mode=max", "type=sbom,generator=127.0.0.1:5000/scanner:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := attestOf(t, tc.args...)
			for _, v := range []string{"cpu", "gpu", "scaler"} {
				if strings.Join(got[v], " ") != strings.Join(tc.want, " ") {
					t.Errorf("%s: %v, want %v", v, got[v], tc.want)
				}
			}
		})
	}
}

// A malformed --attest is a usage error naming the flag and the problem.
func TestAttestFlagErrors(t *testing.T) {
	for flag, want := range map[string]string{
		"type=slsa":                            "type=\"slsa\" is not an attestation type",
		"type=provenance,mode=full":            "mode=",
		"type=provenance,mode=max,x=1":         "takes no key \"x\"",
		"type=sbom,generator=NOT A REF!":       "generator",
		"type=sbom\x00type=sbom,disabled=true": "--attest (2nd): type=sbom is given twice",
	} {
		args := []string{"-f", realFile, "build", "--dry-run"}
		for _, f := range strings.Split(flag, "\x00") {
			args = append(args, "--attest", f)
		}
		code, _, e := run(args...)
		if code != ExitUsage || !strings.Contains(e, "--attest") || !strings.Contains(e, want) {
			t.Errorf("--attest %s: exit %d, want a usage error about %q:\n%s", flag, code, want, e)
		}
	}
}

// Kaniko cannot attest: a release (whose variants ask for attestations)
// with --builder kaniko fails before anything runs, a dry run too, and
// says how to go on; turning them off lets it through.
func TestKanikoRefusesAttestations(t *testing.T) {
	code, o, e := run("-f", realFile, "--var", "RELEASE=v1.0.0", "build", "--dry-run", "--builder", "kaniko")
	if code != ExitFailure || !strings.Contains(e, "Kaniko cannot attach attestations (provenance, sbom)") || !strings.Contains(e, "--attest type=sbom,disabled=true") {
		t.Errorf("exit %d\n%s%s", code, o, e)
	}
	code, o, e = run("-f", realFile, "--var", "RELEASE=v1.0.0", "build", "--dry-run", "--builder", "kaniko",
		"--attest", "type=provenance,disabled=true", "--attest", "type=sbom,disabled=true")
	if code != ExitOK {
		t.Errorf("with attestations off: exit %d\n%s%s", code, o, e)
	}
	code, o, e = run("-f", realFile, "--set", "cpu.compression=zstd", "build", "--dry-run", "--builder", "kaniko", "cpu")
	if code != ExitFailure || !strings.Contains(e, "variant cpu: kaniko cannot build zstd layers") {
		t.Errorf("zstd with kaniko: exit %d\n%s%s", code, o, e)
	}
}

func TestListShowsCompression(t *testing.T) {
	code, out, e := run("-f", realFile, "--set", "cpu.compression=zstd", "--set", "cpu.compression_level=19", "--set", "cpu.force_compression=true", "list")
	if code != 0 || !strings.Contains(out, "COMPRESSION") || !strings.Contains(out, "zstd:19,force") {
		t.Fatalf("exit %d:\n%s%s", code, out, e)
	}
}

// --attest takes one attestation per flag: a second line (which would
// have been dropped unchecked) is a usage error.
func TestAttestFlagOneLine(t *testing.T) {
	code, _, e := run("-f", realFile, "build", "--dry-run", "--attest", "type=provenance,mode=max\ntype=sbom,generator=NOT A REF!")
	if code != ExitUsage || !strings.Contains(e, "--attest: one line only") {
		t.Errorf("exit %d, want a usage error about one line:\n%s", code, e)
	}
}

// --kaniko-arg cannot set what imagegen sets (compression, destination,
// outputs...): a usage error naming the flag, not echoing the value.
func TestKanikoArgOwnedFlags(t *testing.T) {
	for arg, flag := range map[string]string{
		"--compression=zstd":                  "--compression",
		"--compression-level=0":               "--compression-level",
		"--destination=evil.example/x:latest": "--destination",
		"--tar-path=/tmp/x":                   "--tar-path",
		"--no-push":                           "--no-push",
		"--cache-repo=evil.example/cache":     "--cache-repo",
	} {
		code, _, e := run("-f", realFile, "build", "--dry-run", "--builder", "kaniko", "--kaniko-arg", arg, "cpu")
		if code != ExitUsage || !strings.Contains(e, "--kaniko-arg") || !strings.Contains(e, flag) || strings.Contains(e, "evil") {
			t.Errorf("--kaniko-arg %s: exit %d, want a usage error naming %s:\n%s", arg, code, flag, e)
		}
	}
	code, o, e := run("-f", realFile, "build", "--dry-run", "--builder", "kaniko", "--kaniko-arg", "--registry-mirror=m.example", "cpu")
	if code != ExitOK {
		t.Errorf("a mirror: exit %d\n%s%s", code, o, e)
	}
}

// A dry run shows each variant's layer compression and the attestations
// it will carry (--attest applied).
func TestDryRunShowsAttestAndCompression(t *testing.T) {
	code, o, e := run("-f", realFile, "--var", "RELEASE=v1.0.0", "--set", "gpu.compression=zstd", "--set", "gpu.compression_level=19",
		"build", "--dry-run", "--attest", "type=sbom,disabled=true")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(o, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	if h := lines["VARIANT"]; !strings.Contains(h, "COMPRESSION") || !strings.Contains(h, "ATTEST") {
		t.Errorf("header %q", h)
	}
	if l := lines["gpu"]; !strings.Contains(l, "zstd:19") || !strings.Contains(l, "type=provenance,mode=max") || strings.Contains(l, "sbom") {
		t.Errorf("gpu line %q", l)
	}
	if l := lines["cpu"]; !strings.Contains(l, "gzip") || !strings.Contains(l, "type=provenance,mode=max") {
		t.Errorf("cpu line %q", l)
	}
}

// With provenance, each request names the variants file's repository
// (origin without user-info) and commit, as buildx does; without
// provenance, or outside a repository, nothing.
func TestProvenanceNamesTheSource(t *testing.T) {
	t.Setenv("GITHUB_ACTIONS", "") // the test runs in Actions too
	data, err := os.ReadFile(realFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "variants.hcl"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "test")
	git("remote", "add", "origin", "https://x-access-token:ghp_t0ken@git.example/team/worker.git")
	commit := git("rev-parse", "HEAD")
	for _, tc := range []struct {
		args []string
		want build.VCS
	}{
		{[]string{"--var", "RELEASE=v1.0.0"}, build.VCS{Source: "https://git.example/team/worker.git", Revision: commit}},
		{nil, build.VCS{}},
	} {
		fb := withFakeBackend(t)
		fb.caps.Attestations = true
		args := append([]string{"-f", filepath.Join(dir, "variants.hcl")}, tc.args...)
		args = append(args, "build", "--builder", "fake", "--progress", "quiet", "--output", filepath.Join(t.TempDir(), "oci"),
			"--worker-bin", "linux/amd64="+staticBinary(t))
		if code, o, e := run(args...); code != ExitOK {
			t.Fatalf("exit %d\n%s%s", code, o, e)
		}
		for _, r := range fb.reqs {
			if r.VCS != tc.want {
				t.Errorf("%v: %s: VCS %+v, want %+v", tc.args, r.Variant.Name, r.VCS, tc.want)
			}
		}
	}
}
