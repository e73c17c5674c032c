package release

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var planScript, _ = filepath.Abs("../../.github/scripts/release-plan.sh")

// runIn runs a command in dir with env (PATH first, HOME set) and stdin,
// bounded in time.
func runIn(t *testing.T, dir string, env []string, stdin string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LC_ALL=C"}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func plan(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return runIn(t, t.TempDir(), nil, stdin, planScript, args...)
}

const tags = "v0.9.0\nv1.0.0\nv1.1.0-rc.1\nv1\nv0.10.0\nnightly\nv01.2.3\n"

// A release moves latest-* only when it is the highest vX.Y.Z and not a
// pre-release.
func TestLatest(t *testing.T) {
	for _, c := range []struct {
		tags, tag, pre, want string
	}{
		{tags + "v1.0.1\n", "v1.0.1", "false", "true"},
		{tags, "v1.0.0", "false", "true"},               // the newest release itself
		{tags + "v0.9.1\n", "v0.9.1", "false", "false"}, // a backport after v1.0.0
		{tags + "v1.2.0-rc.1\n", "v1.2.0-rc.1", "true", "false"},
		{tags + "v1.2.0-rc.1\n", "v1.2.0-rc.1", "false", "false"}, // a suffix is a pre-release even if GitHub's box was not ticked
		{tags + "v1.2.0\n", "v1.2.0", "true", "false"},            // ticked as a pre-release
		{"v1.9.0\n", "v1.10.0", "false", "true"},                  // numeric order, and the tag not yet listed
		{"v1.10.0\nv1.9.0\n", "v1.9.0", "false", "false"},
		{"v2.0.0-beta.1\nv1.0.0\n", "v1.0.0", "false", "true"}, // a pre-release does not hold latest back
		{"", "v0.1.0", "false", "true"},                        // the first release
		{"v1.0.0\n", "v1.0.0\n", "false", ""},                  // not a tag: refused
	} {
		out, errOut, code := plan(t, c.tags, "latest", c.tag, c.pre)
		if c.want == "" {
			if code != 2 || !strings.Contains(errOut, "is not vX.Y.Z") {
				t.Errorf("latest %q: exit %d %q %q, want a refusal", c.tag, code, out, errOut)
			}
			continue
		}
		if code != 0 || strings.TrimSpace(out) != c.want {
			t.Errorf("tags %q, release %s (pre-release %s): LATEST %q (exit %d, %s), want %s", c.tags, c.tag, c.pre, out, code, errOut, c.want)
		}
	}
}

func TestLatestRefusesHostileInput(t *testing.T) {
	long := "v1.0.0-" + strings.Repeat("x", 5000) + "$(id)"
	for _, args := range [][]string{{"latest", long, "false"}, {"latest", "v1.0.0", "yes"}, {"latest", "v1.0.0"}, {"frobnicate"}} {
		out, errOut, code := plan(t, "", args...)
		if code != 2 || out != "" || len(errOut) > 300 || !strings.HasPrefix(errOut, "release-plan: ") {
			t.Errorf("%.40q: exit %d, stdout %q, stderr (%d bytes) %.300q", args, code, out, len(errOut), errOut)
		}
	}
}

func TestNewest(t *testing.T) {
	for in, want := range map[string]string{tags: "v1.0.0", "": "", "v2.0.0-rc.1\n": "", "v0.2.0\nv0.10.0\nv0.9.9\n": "v0.10.0"} {
		out, errOut, code := plan(t, in, "newest")
		if code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("newest of %q: %q (exit %d, %s), want %q", in, out, code, errOut, want)
		}
	}
}

// The workflow logs in to the registry IMAGE_REGISTRY names.
func TestRegistry(t *testing.T) {
	for reg, want := range map[string]string{
		"docker.io/runpod":                    "host=docker.io\nlogin=dockerhub\n",
		"runpod":                              "host=docker.io\nlogin=dockerhub\n",
		"index.docker.io/me":                  "host=docker.io\nlogin=dockerhub\n",
		"ghcr.io/my-org":                      "host=ghcr.io\nlogin=ghcr\n",
		"ghcr.io/my-org/sub":                  "host=ghcr.io\nlogin=ghcr\n",
		"registry.example.com:5000/team":      "host=registry.example.com:5000\nlogin=other\n",
		"123.dkr.ecr.us-east-1.amazonaws.com": "host=123.dkr.ecr.us-east-1.amazonaws.com\nlogin=other\n",
		"localhost:5000/x":                    "host=localhost:5000\nlogin=other\n",
		"localhost/x":                         "host=localhost\nlogin=other\n",
	} {
		out, errOut, code := plan(t, "", "registry", reg)
		if code != 0 || out != want {
			t.Errorf("registry %s: %q (exit %d, %s), want %q", reg, out, code, errOut, want)
		}
	}
	for _, reg := range []string{"", "ghcr.io/x y", "ghcr.io/x\nlogin=dockerhub", strings.Repeat("a", 4000) + " "} {
		out, errOut, code := plan(t, "", "registry", reg)
		if code != 2 || out != "" || len(errOut) > 300 || !strings.Contains(errOut, "IMAGE_REGISTRY") {
			t.Errorf("registry %.40q: exit %d %q %.300q, want a short refusal", reg, code, out, errOut)
		}
	}
}

// Every variant imagegen pushed is signed by digest.
func TestSignRefs(t *testing.T) {
	d1, d2 := "sha256:"+strings.Repeat("ab", 32), "sha256:"+strings.Repeat("cd", 32)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	good := write("good.json", `{"variants": {
  "cpu": {"digest": "`+d1+`", "image": "docker.io/runpod/worker-github_runner", "tags": ["docker.io/runpod/worker-github_runner:v1.0.0-cpu"], "tagged": true},
  "gpu": {"digest": "`+d2+`", "image": "docker.io/runpod/worker-github_runner", "tags": [], "tagged": true}}}`)
	out, errOut, code := plan(t, "", "sign-refs", good)
	want := "docker.io/runpod/worker-github_runner@" + d1 + "\ndocker.io/runpod/worker-github_runner@" + d2 + "\n"
	if code != 0 || out != want {
		t.Errorf("sign-refs: %q (exit %d, %s), want %q", out, code, errOut, want)
	}
	for name, body := range map[string]string{
		"empty.json":    `{"variants": {}}`,
		"nodigest.json": `{"variants": {"cpu": {"image": "r/w", "digest": ""}}}`,
		"inject.json":   `{"variants": {"cpu": {"image": "r/w --key x", "digest": "` + d1 + `"}}}`,
		"notjson.json":  `<html>` + strings.Repeat("x", 10000),
		"other.json":    `{"tags": []}`,
	} {
		out, errOut, code := plan(t, "", "sign-refs", write(name, body))
		if code != 2 || out != "" || len(errOut) > 400 {
			t.Errorf("sign-refs %s: exit %d %q %.400q, want a refusal", name, code, out, errOut)
		}
	}
	if _, errOut, code := plan(t, "", "sign-refs", filepath.Join(dir, "missing.json")); code != 2 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("missing file: exit %d %s", code, errOut)
	}
}
