package kaniko

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/golden"
	"github.com/runpod-workers/worker-github_runner/internal/render"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

func matrix(t *testing.T, vars ...string) *variants.Matrix {
	t.Helper()
	m, files, diags := variants.LoadFiles([]string{"../../../variants.hcl"}, variants.Options{Vars: vars, LookupEnv: func(string) (string, bool) { return "", false }})
	if diags.HasErrors() {
		t.Fatal(variants.FormatDiagnostics(files, diags))
	}
	return m
}

// The executor command line for each variant and output mode (golden).
func TestArgsGolden(t *testing.T) {
	b := &Builder{o: Options{Executor: DefaultExecutor, WorkDir: "/tmp/imagegen-kaniko", ExtraArgs: []string{"--registry-map=index.docker.io=127.0.0.1:5000"}}}
	var out bytes.Buffer
	for _, release := range []string{"dev", "v1.0.0"} {
		m := matrix(t, "REGISTRY=127.0.0.1:5000/runpod", "RELEASE="+release, "LATEST="+strconv.FormatBool(release != "dev"))
		for _, v := range m.Variants {
			for _, mode := range []struct {
				name string
				out  build.Output
			}{
				{"atomic push", build.PushByDigest()},
				{"push tags", build.PushTags()},
				{"local", ociLayout(t, "/out/oci/"+v.Name)},
			} {
				req := &build.Request{Variant: v, ContextDir: "/ctx", Output: mode.out, Cache: build.Cache{To: []build.CacheSpec{{Type: "registry", Ref: v.Image + "-cache"}}}}
				args, err := b.Args(req)
				if err != nil {
					t.Fatal(err)
				}
				out.WriteString("# " + v.Name + " " + release + ", " + mode.name + "\n" + strings.Join(args, "\n") + "\n\n")
			}
		}
	}
	golden.Check(t, "args", out.Bytes())
}

func ociLayout(t *testing.T, dir string) build.Output {
	o, err := build.OCILayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestArgsRefuseMultiPlatform(t *testing.T) {
	m := matrix(t, `RUNNER_SHA256={"linux/amd64":"`+strings.Repeat("a", 64)+`","linux/arm64":"`+strings.Repeat("b", 64)+`"}`, `PLATFORMS=["linux/amd64","linux/arm64"]`)
	b := &Builder{o: Options{WorkDir: "/w"}}
	if _, err := b.Args(&build.Request{Variant: m.Find("cpu")}); err == nil || !strings.Contains(err.Error(), "one platform per image") {
		t.Fatalf("err = %v", err)
	}
}

func TestDigestFiles(t *testing.T) {
	dir := t.TempDir()
	d := "sha256:" + strings.Repeat("ab", 32)
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	if got, err := ReadDigestFile(write("d", d+"\n")); err != nil || got != d {
		t.Errorf("%q %v", got, err)
	}
	for _, bad := range []string{"", "sha256:xyz", "latest"} {
		if _, err := ReadDigestFile(write("bad", bad)); err == nil {
			t.Errorf("digest %q accepted", bad)
		}
	}
	refs, err := ReadImageNameWithDigest(write("n", "127.0.0.1:5000/runpod/w:dev-cpu@"+d+"\n127.0.0.1:5000/runpod/w:latest-cpu@"+d+"\n"))
	if err != nil || len(refs) != 2 || !strings.HasSuffix(refs[1], ":latest-cpu@"+d) {
		t.Errorf("%v %v", refs, err)
	}
	for _, bad := range []string{"", "not a ref", "x/y:tag@sha256:short"} {
		if _, err := ReadImageNameWithDigest(write("nb", bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ReadDigestFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// A fake executor (a shell script) stands in for Kaniko: it records its
// arguments and writes the digest files Kaniko writes for pushed tags.
func TestBuildWithFakeExecutor(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "executor")
	d := "sha256:" + strings.Repeat("cd", 32)
	script := `#!/bin/sh
echo "$@" > "` + filepath.Join(dir, "args") + `"
for a in "$@"; do
  case "$a" in
    --digest-file=*) echo -n "` + d + `" > "${a#--digest-file=}" ;;
    --image-name-with-digest-file=*) f="${a#--image-name-with-digest-file=}"; : > "$f" ;;
  esac
done
for a in "$@"; do
  case "$a" in
    --destination=*) echo "${a#--destination=}@` + d + `" >> "$f" ;;
  esac
done
echo "INFO[0001] RUN set -eu"
echo "INFO[0001] Using caching version of cmd: RUN set -eu"
echo "INFO[0002] COPY worker-linux-amd64 /usr/local/bin/worker"
`
	os.WriteFile(exe, []byte(script), 0o755)
	var log bytes.Buffer
	b, err := New(Options{Executor: exe, Force: true, WorkDir: filepath.Join(dir, "work"), Output: &log})
	if err != nil {
		t.Fatal(err)
	}
	m := matrix(t, "REGISTRY=127.0.0.1:5000/runpod")
	v := m.Find("cpu")
	plan, _ := render.Variant(v)
	res, err := build.Run(context.Background(), b, []*build.Request{{Variant: v, Dockerfile: plan.Dockerfile, ContextDir: dir, Output: build.PushTags()}}, build.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Digest != d || res[0].Steps != 2 || res[0].CachedSteps != 1 {
		t.Errorf("result %+v", res[0])
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	for _, want := range []string{"--destination=127.0.0.1:5000/runpod/worker-github_runner:dev-cpu", "--insecure-registry=127.0.0.1:5000", "--force", "--cleanup"} {
		if !strings.Contains(string(args), want) {
			t.Errorf("args lack %s: %s", want, args)
		}
	}
	if !strings.Contains(log.String(), "[cpu] INFO[0001] RUN") {
		t.Errorf("output not prefixed: %s", log.String())
	}
	df, _ := os.ReadFile(filepath.Join(dir, "work", "imagegen", "builds", "cpu", "Dockerfile"))
	if !bytes.Equal(df, plan.Dockerfile) {
		t.Error("the Dockerfile given to kaniko is not the rendered one")
	}
}

func TestRefusesOnAHost(t *testing.T) {
	if _, err := os.Stat("/kaniko"); err == nil {
		t.Skip("this machine has /kaniko: it is a Kaniko container")
	}
	exe := filepath.Join(t.TempDir(), "executor")
	os.WriteFile(exe, []byte("#!/bin/sh\nexit 99\n"), 0o755)
	if _, err := New(Options{Executor: exe}); err == nil || !strings.Contains(err.Error(), "refusing to run Kaniko") {
		t.Fatalf("err = %v", err)
	}
}

// Kaniko has no build secrets and caches only in a registry: asking for
// either fails instead of being ignored.
func TestArgsRefuseWhatKanikoCannotDo(t *testing.T) {
	v := matrix(t).Find("cpu")
	b := &Builder{o: Options{WorkDir: "/w"}}
	for _, tc := range []struct {
		req  *build.Request
		want string
	}{
		{&build.Request{Variant: v, Secrets: map[string][]byte{"runner_netrc": []byte("x")}}, "no build secrets"},
		{&build.Request{Variant: v, Cache: build.Cache{To: []build.CacheSpec{{Type: "local", Attrs: map[string]string{"dest": "/tmp/c"}}}}}, "only in a registry"},
	} {
		if _, err := b.Args(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

// Without --destination tags, Kaniko writes a tarball that build.Publish
// sends on: pushed by digest (no tag written), or written as an OCI
// layout; the tarball is removed after.
func TestBuildPublishesTheTarball(t *testing.T) {
	s := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer s.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	dir := t.TempDir()
	img, _ := random.Image(64, 1)
	want, _ := img.Digest()
	src := filepath.Join(dir, "image.tar")
	tag, _ := name.NewTag(host + "/runpod/w:imagegen-build")
	if err := tarball.WriteToFile(src, tag, img); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "executor")
	os.WriteFile(exe, []byte("#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --tar-path=*) cp "+src+" \"${a#--tar-path=}\" ;; esac; done\n"), 0o755)
	b, err := New(Options{Executor: exe, Force: true, WorkDir: filepath.Join(dir, "work")})
	if err != nil {
		t.Fatal(err)
	}
	v := matrix(t, "REGISTRY="+host+"/runpod").Find("cpu")
	for _, out := range []build.Output{build.PushByDigest(), ociLayout(t, filepath.Join(dir, "oci", "cpu"))} {
		res, err := build.Run(context.Background(), b, []*build.Request{{Variant: v, ContextDir: dir, Output: out}}, build.Options{})
		if err != nil || res[0].Digest != want.String() {
			t.Fatalf("%v: %+v %v", out, res, err)
		}
		if _, err := os.Stat(b.files("cpu").tar); !os.IsNotExist(err) {
			t.Errorf("%v: the tarball was kept", out)
		}
	}
	if _, err := remote.Head(ref(t, v.Image+"@"+want.String())); err != nil {
		t.Errorf("not pushed by digest: %v", err)
	}
	if _, err := remote.Head(ref(t, v.Tags[0])); err == nil {
		t.Errorf("a tag was written")
	}
	if _, err := layout.FromPath(filepath.Join(dir, "oci", "cpu")); err != nil {
		t.Errorf("no OCI layout: %v", err)
	}
}

func ref(t *testing.T, s string) name.Reference {
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
