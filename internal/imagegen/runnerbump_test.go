package imagegen

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/golden"
)

const (
	sum331x64   = "f7ae1b0f2e5c0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b"
	sum331arm64 = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
)

// fakeReleases serves actions/runner releases as GitHub's API does, the
// sums inside the notes between BEGIN/END SHA markers.
func fakeReleases(t *testing.T, withArm bool) *httptest.Server {
	notes := func(v string) string {
		x64, arm64 := sum331x64, sum331arm64
		if v != "2.331.0" { // other releases, other sums
			x64, arm64 = strings.Repeat("e", 64), strings.Repeat("d", 64)
		}
		s := fmt.Sprintf("## Changes\n- things\n\n```bash\n# Download the latest runner package\ncurl -O -L https://github.com/actions/runner/releases/download/v%s/actions-runner-linux-x64-%s.tar.gz\n```\n"+
			"- actions-runner-linux-x64-%s.tar.gz <!-- BEGIN SHA linux-x64 -->%s<!-- END SHA linux-x64 -->\n", v, v, v, x64)
		if withArm {
			s += fmt.Sprintf("- actions-runner-linux-arm64-%s.tar.gz <!-- BEGIN SHA linux-arm64 -->%s<!-- END SHA linux-arm64 -->\n", v, arm64)
		}
		return s
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/actions/runner/releases/tags/{tag}", func(w http.ResponseWriter, r *http.Request) {
		tag := r.PathValue("tag")
		if tag != "v2.331.0" && tag != "v2.339.0" {
			http.Error(w, `{"message":"Not Found"}`, 404)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"tag_name": tag, "body": notes(tag[1:])})
	})
	mux.HandleFunc("GET /repos/actions/runner/releases/latest", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"tag_name": "v2.331.0", "body": notes("2.331.0")})
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

var amd64SumRE = regexp.MustCompile(`"linux/amd64" = "[0-9a-f]{64}"`)

// diffLines lists the lines that changed, "-old" then "+new".
func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("%d-%s", i+1, x), fmt.Sprintf("%d+%s", i+1, y))
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func TestRunnerBumpGoldenDiff(t *testing.T) {
	api := fakeReleases(t, true)
	old := realRunner(t)
	orig, _ := os.ReadFile(realFile)
	file := filepath.Join(t.TempDir(), "variants.hcl")
	os.WriteFile(file, orig, 0o644)
	code, out, errOut := run("-f", file, "runner-bump", "2.331.0", "--api-url", api.URL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "runner "+old[0].Value+" -> 2.331.0, linux/amd64 sha256 "+sum331x64) {
		t.Errorf("stdout: %s", out)
	}
	got, _ := os.ReadFile(file)
	golden.Check(t, "runner-bump.diff", []byte(diffLines(string(orig), string(got))), old...)
	// The result still resolves, with the new runner.
	code, printed, errOut := run("-f", file, "print", "cpu")
	if code != 0 || !strings.Contains(printed, `"version": "2.331.0"`) || !strings.Contains(printed, sum331x64) {
		t.Fatalf("print after bump: %d %s", code, errOut)
	}
	// Again: nothing to do.
	if code, out, _ := run("-f", file, "runner-bump", "2.331.0", "--api-url", api.URL); code != 0 || !strings.Contains(out, "already at 2.331.0") {
		t.Errorf("second bump: %d %s", code, out)
	}
}

func TestRunnerBumpRefusesMissingChecksum(t *testing.T) {
	api := fakeReleases(t, false)
	orig, _ := os.ReadFile(realFile)
	withArm := string(orig)
	if !strings.Contains(withArm, `"linux/arm64" = "`) {
		withArm = amd64SumRE.ReplaceAllString(withArm, "$0\n    \"linux/arm64\" = \""+strings.Repeat("c", 64)+"\"")
	}
	file := filepath.Join(t.TempDir(), "variants.hcl")
	os.WriteFile(file, []byte(withArm), 0o644)
	code, _, errOut := run("-f", file, "runner-bump", "--api-url", api.URL)
	if code != ExitFailure || !strings.Contains(errOut, "publishes no SHA-256 for linux/arm64") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got, _ := os.ReadFile(file); string(got) != withArm {
		t.Error("the file changed although the bump was refused")
	}
	// With an arm64 sum in the release, both are written.
	api2 := fakeReleases(t, true)
	if code, _, errOut := run("-f", file, "runner-bump", "--api-url", api2.URL); code != 0 {
		t.Fatalf("%d %s", code, errOut)
	}
	got, _ := os.ReadFile(file)
	if !strings.Contains(string(got), sum331arm64) || !strings.Contains(string(got), sum331x64) {
		t.Errorf("sums not written:\n%s", got)
	}
}

func TestRunnerBumpErrors(t *testing.T) {
	api := fakeReleases(t, false)
	if code, _, e := run("-f", realFile, "runner-bump", "2.999.0", "--api-url", api.URL); code != ExitFailure || !strings.Contains(e, "no release v2.999.0") {
		t.Errorf("unknown release: %d %s", code, e)
	}
	if code, _, _ := run("-f", realFile, "runner-bump", "latest"); code != ExitUsage {
		t.Errorf("bad version: exit %d", code)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "v.hcl")
	os.WriteFile(p, []byte("variable \"RUNNER_VERSION\" { default = \"2.1.0\" }\n"), 0o644)
	if code, _, e := run("-f", p, "runner-bump", "--api-url", api.URL); code != ExitFailure || !strings.Contains(e, "RUNNER_SHA256") {
		t.Errorf("file without sums: %d %s", code, e)
	}
}
