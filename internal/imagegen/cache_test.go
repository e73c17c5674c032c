package imagegen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// An image with ',' and '=' must not turn --cache-to '{image}:cache' into
// another cache type (a local export writing anywhere): the flag is parsed
// once, the image goes into the reference only, and a reference that is not
// one is refused.
func TestCacheSpecCannotBeInjected(t *testing.T) {
	spec, err := build.ParseCacheSpec("{image}:cache-{variant}")
	if err != nil {
		t.Fatal(err)
	}
	for _, image := range []string{"a.b,type=local,dest=/tmp/x", "a.b/x\"y", "a.b/x y", "a.b/$HOME"} {
		v := &variants.Variant{Name: "gpu", Image: image}
		got, err := expandCache("cache-to", []build.CacheSpec{spec}, v)
		if err == nil || !strings.Contains(err.Error(), "--cache-to for variant gpu") || !strings.Contains(err.Error(), "not a valid image reference") {
			t.Errorf("image %q: %+v, %v; want an error", image, got, err)
		}
	}
	v := &variants.Variant{Name: "gpu", Image: "127.0.0.1:5000/runpod/w"}
	got, err := expandCache("cache-to", []build.CacheSpec{spec}, v)
	if err != nil || len(got) != 1 || got[0].Type != "registry" || got[0].Ref != "127.0.0.1:5000/runpod/w:cache-gpu" || len(got[0].Attrs) != 0 {
		t.Fatalf("%+v, %v", got, err)
	}
}

// A malformed cache flag is a usage error, found before anything runs.
func TestCacheFlagErrors(t *testing.T) {
	for flag, want := range map[string]string{
		"type=local,dest={image}":           "only replaced in the reference",
		"type=registry,mode=max":            "needs ref=",
		"ref=x,ref=y":                       "given twice",
		"type=registry,ref=a,b":             "attribute 3 (attributes are separated by commas) is not key=value",
		"type=registry,ref=Upper/Case:x":    "not a valid image reference",
		"ghcr.io/me/cache:x,type=local,x=y": "not key=value",
	} {
		code, _, e := run("-f", realFile, "build", "--dry-run", "--cache-to", flag)
		if code != ExitUsage || !strings.Contains(e, want) {
			t.Errorf("--cache-to %s: exit %d, stderr %q; want 2 and %q", flag, code, e, want)
		}
	}
	if code, _, e := run("-f", realFile, "build", "--dry-run", "--cache-from", "{image}:cache-{variant}", "--cache-to", "type=registry,ref={image}:cache-{variant},mode=min"); code != 0 {
		t.Errorf("good cache flags: exit %d: %s", code, e)
	}
}

// --runner-netrc: read before anything runs, never echoed, refused with
// Kaniko (no build secrets there).
func TestRunnerNetrcFlag(t *testing.T) {
	dir := t.TempDir()
	netrc := filepath.Join(dir, "netrc")
	os.WriteFile(netrc, []byte("machine mirror.example login u password s3cret\n"), 0o600)
	if code, o, e := run("-f", realFile, "build", "--dry-run", "--runner-netrc", netrc); code != 0 || strings.Contains(o+e, "s3cret") {
		t.Errorf("buildkit: exit %d\n%s%s", code, o, e)
	}
	if code, _, e := run("-f", realFile, "build", "--dry-run", "--builder", "kaniko", "--runner-netrc", netrc); code != ExitUsage || !strings.Contains(e, "not supported with --builder kaniko") {
		t.Errorf("kaniko: exit %d: %s", code, e)
	}
	for _, bad := range []string{filepath.Join(dir, "missing"), dir} {
		if code, _, e := run("-f", realFile, "build", "--dry-run", "--runner-netrc", bad); code != ExitFailure || !strings.Contains(e, "--runner-netrc") {
			t.Errorf("%s: exit %d: %s", bad, code, e)
		}
	}
}

// A cache flag's value is never echoed (it may carry a token): errors name
// the flag, its position and the attribute.
func TestCacheFlagErrorsDoNotEchoValues(t *testing.T) {
	const secret = "ghs_S3CRETTOKENVALUE"
	for _, flag := range []string{
		"type=gha,token=" + secret + ",url={image}",
		"type=gha,token=" + secret + ",token=" + secret,
		"type=gha,token=" + secret + ",garbage",
		"type=gha,token=" + secret + ",scope={image}",
		"type=registry,ref=" + secret + "/Upper",
		"type=gha,token=" + secret + "," + secret,
	} {
		code, o, e := run("-f", realFile, "build", "--dry-run", "--cache-to", "{image}:c", "--cache-to", flag)
		if code != ExitUsage || strings.Contains(o+e, "ghs_S3CRET") && !strings.Contains(flag, "ref=") || !strings.Contains(e, "--cache-to (2nd)") {
			t.Errorf("--cache-to %s: exit %d, stderr:\n%s", flag, code, e)
		}
	}
	// A reference is shown quoted, control characters escaped.
	code, _, e := run("-f", realFile, "build", "--dry-run", "--cache-from", "ref=a\x1b[31m/b")
	if code != ExitUsage || strings.Contains(e, "\x1b") || !strings.Contains(e, `\x1b`) {
		t.Errorf("exit %d, stderr %q", code, e)
	}
}

// An empty cache flag, or an empty reference, is a usage error, not a
// cache with no reference.
func TestEmptyCacheFlagIsUsageError(t *testing.T) {
	for _, args := range [][]string{{"--cache-to", ""}, {"--cache-from", ""}, {"--cache-to", "ref="}, {"--cache-from", "type=registry,ref="}} {
		code, _, e := run(append([]string{"-f", realFile, "build", "--dry-run"}, args...)...)
		if code != ExitUsage || !strings.Contains(e, "empty") {
			t.Errorf("%q: exit %d, stderr:\n%s", args, code, e)
		}
	}
}

// A reference with a port out of range is refused like in variants files;
// {variant} (a validated variant name) fills scope and name too, the
// common per-variant GitHub Actions cache.
func TestCacheRefPortAndVariantScope(t *testing.T) {
	for _, ref := range []string{"localhost:99999/x:c", "localhost:0/x:c", "localhost:05000/x:c"} {
		code, _, e := run("-f", realFile, "build", "--dry-run", "--cache-to", ref)
		if code != ExitUsage || !strings.Contains(e, "port") {
			t.Errorf("%s: exit %d, stderr:\n%s", ref, code, e)
		}
	}
	spec, err := build.ParseCacheSpec("type=gha,scope=imagegen-{variant},token=x")
	if err != nil {
		t.Fatal(err)
	}
	got, err := expandCache("cache-to", []build.CacheSpec{spec}, &variants.Variant{Name: "gpu", Image: "r/w"})
	if err != nil || len(got) != 1 || got[0].Attrs["scope"] != "imagegen-gpu" || got[0].Attrs["token"] != "x" {
		t.Errorf("%+v, %v", got, err)
	}
	if code, _, e := run("-f", realFile, "build", "--dry-run", "--cache-to", "type=s3,name={variant},region=x"); code != 0 {
		t.Errorf("name={variant}: exit %d: %s", code, e)
	}
}
