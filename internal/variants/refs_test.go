package variants

import (
	"strings"
	"testing"
)

// An image, base, tag or Kaniko image is checked against the Docker
// reference grammar: anything else could turn a --cache-to
// '{image}:cache-{variant}' into a local export writing anywhere.
func TestReferenceGrammar(t *testing.T) {
	withImage := func(image string) string {
		return strings.Replace(cpuVariant, `"registry.example/team/worker"`, `"`+image+`"`, 1) + tail
	}
	withBase := func(base string) string {
		return strings.Replace(cpuVariant, `"ubuntu:24.04"`, `"`+base+`"`, 1) + tail
	}
	withTag := func(tag string) string {
		return strings.Replace(cpuVariant, `["dev-cpu"]`, `["`+tag+`"]`, 1) + tail
	}
	tests := []errorCase{
		{name: "comma and = in image", src: withImage("a.b,type=local,dest=/tmp/x"), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "= in image", src: withImage("registry.example/a=b"), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "quote in image", src: withImage(`registry.example/a\"b`), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "dollar in image", src: withImage("registry.example/$HOME"), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "dot-dot path part", src: withImage("registry.example/a/../b"), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "empty path part", src: withImage("registry.example//b"), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "port 0", src: withImage("registry.example:0/b"), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "port too big", src: withImage("registry.example:65536/b"), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "image with a tag", src: withImage("registry.example/b:x"), summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "comma in base", src: withBase("ubuntu:24.04,type=local"), summary: "Invalid base image", pos: "test.hcl:4:13"},
		{name: "base port too big", src: withBase("r.example:99999/ubuntu:24.04"), summary: "Invalid base image", pos: "test.hcl:4:13"},
		{name: "full tag with comma", src: withTag("ghcr.io/a,type=local/x:y"), summary: "Invalid tag", pos: "test.hcl:6:14"},
		{name: "full tag with dot-dot", src: withTag("ghcr.io/a/../x:y"), summary: "Invalid tag", pos: "test.hcl:6:14"},
		{name: "full tag without tag", src: withTag("ghcr.io/a/x@sha256:" + sumA), summary: "Invalid tag", pos: "test.hcl:6:14"},
		{name: "kaniko image with comma", src: cpuVariant + strings.Replace(tail, "gcr.io/kaniko-project/executor:v1.23.2", "gcr.io/k,type=local:v1", 1), summary: "Invalid Kaniko image", pos: "test.hcl:16:13"},
		{name: "REGISTRY from the environment", src: `
variable "REGISTRY" { default = "docker.io/runpod" }
` + strings.Replace(cpuVariant, `"registry.example/team/worker"`, `"${REGISTRY}/worker"`, 1) + tail,
			opts: Options{LookupEnv: env("REGISTRY", "a.b,type=local,dest=/tmp/x")}, summary: "Invalid image repository", pos: "test.hcl:7:13"},
		{name: "image from --set", src: cpuVariant + tail, opts: Options{Sets: []string{"cpu.image=a.b,type=local,dest=/tmp/x"}}, summary: "Invalid image repository", pos: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expectError(t, tc) })
	}
}

// The diagnostic says what is wrong, not just "invalid".
func TestReferenceErrorSaysWhy(t *testing.T) {
	for image, why := range map[string]string{
		"a.b,type=local,dest=/tmp/x": `contains ','`,
		"registry.example:0/b":       "port 0 is not between 1 and 65535",
		"registry.example/a/../b":    `path component ".."`,
		"registry.example//b":        "empty path component",
		"Registry.example/UPPER":     "lower-case",
	} {
		src := strings.Replace(cpuVariant, `"registry.example/team/worker"`, `"`+image+`"`, 1) + tail
		_, text, _ := load(t, src, Options{})
		if !strings.Contains(text, why) {
			t.Errorf("image %q: diagnostic lacks %q:\n%s", image, why, text)
		}
	}
}

func TestValidReferencesPass(t *testing.T) {
	for _, image := range []string{"registry.example/team/worker", "127.0.0.1:5000/worker", "localhost:65535/a/b", "docker.io/runpod/worker-github_runner", "runpod/a__b.c-d"} {
		src := strings.Replace(cpuVariant, `"registry.example/team/worker"`, `"`+image+`"`, 1) + tail
		mustLoad(t, src, Options{})
	}
	for _, base := range []string{"ubuntu", "ubuntu:24.04", "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04", "ubuntu@sha256:" + sumA, "127.0.0.1:5000/ubuntu:24.04"} {
		mustLoad(t, strings.Replace(cpuVariant, `"ubuntu:24.04"`, `"`+base+`"`, 1)+tail, Options{})
	}
}

// Two variants writing the same tag: the last build would win silently.
func TestDuplicateTagAcrossVariants(t *testing.T) {
	src := cpuVariant + `
variant "cpu2" {
  flavour = "cpu"
  base    = "ubuntu:24.04"
  image   = "registry.example/team/worker"
  tags    = ["other", "dev-cpu"]
}
` + tail
	_, text, diags := load(t, src, Options{})
	if !diags.HasErrors() {
		t.Fatalf("two variants writing registry.example/team/worker:dev-cpu load without error:\n%s", text)
	}
	for _, want := range []string{"test.hcl:13:23: error: Duplicate tag", "test.hcl:6:14", `"cpu"`, `"cpu2"`} {
		if !strings.Contains(text, want) {
			t.Errorf("diagnostic lacks %q:\n%s", want, text)
		}
	}
}

// docker.io/x/y:t and x/y:t are the same tag.
func TestDuplicateTagNormalised(t *testing.T) {
	src := strings.Replace(cpuVariant, `"registry.example/team/worker"`, `"docker.io/runpod/worker"`, 1) + `
variant "cpu2" {
  flavour = "cpu"
  base    = "ubuntu:24.04"
  image   = "registry.example/team/worker"
  tags    = ["runpod/worker:dev-cpu"]
}
` + tail
	_, text, diags := load(t, src, Options{})
	if !diags.HasErrors() || !strings.Contains(text, "test.hcl:13:14: error: Duplicate tag") || !strings.Contains(text, "test.hcl:6:14") {
		t.Fatalf("want a duplicate tag error at 13:14 naming 6:14:\n%s", text)
	}
}

// A matrix whose tags do not depend on the combination writes one tag
// from every combination.
func TestDuplicateTagInMatrix(t *testing.T) {
	src := `
variant "m" {
  matrix  = { a = ["1", "2"] }
  flavour = "cpu"
  base    = "ubuntu:24.04"
  image   = "registry.example/worker"
  tags    = ["same"]
}` + tail
	_, text, diags := load(t, src, Options{})
	if !diags.HasErrors() || !strings.Contains(text, "Duplicate tag") || !strings.Contains(text, `"m-1"`) || !strings.Contains(text, `"m-2"`) {
		t.Fatalf("want a duplicate tag error naming m-1 and m-2:\n%s", text)
	}
}

// Credentials in the runner URL would be recorded in the image history
// (build arguments are); they must be refused, without being echoed.
func TestRunnerURLCredentials(t *testing.T) {
	for name, tc := range map[string]struct {
		src  string
		opts Options
		pos  string
	}{
		"in the file": {src: cpuVariant + strings.Replace(tail, "https://mirror.example/runner", "https://bob:s3cretpw@mirror.example/runner", 1), pos: "test.hcl:11:13"},
		"user only":   {src: cpuVariant + strings.Replace(tail, "https://mirror.example/runner", "https://s3cretpw@mirror.example/runner", 1), pos: "test.hcl:11:13"},
		"from the environment": {
			src:  "variable \"RUNNER_URL\" { default = \"https://mirror.example\" }\n" + cpuVariant + strings.Replace(tail, `"https://mirror.example/runner"`, "RUNNER_URL", 1),
			opts: Options{LookupEnv: env("RUNNER_URL", "https://bob:s3cretpw@mirror.example/runner")}, pos: "test.hcl:12:13",
		},
	} {
		t.Run(name, func(t *testing.T) {
			expectError(t, errorCase{name: name, src: tc.src, opts: tc.opts, summary: "Credentials in runner URL", pos: tc.pos})
			_, text, _ := load(t, tc.src, tc.opts)
			if strings.Contains(text, "s3cretpw") && !strings.Contains(tc.src, "s3cretpw") {
				t.Errorf("the diagnostic echoes the credentials:\n%s", text)
			}
			if !strings.Contains(text, "runner_netrc") {
				t.Errorf("the diagnostic does not say how to give mirror credentials:\n%s", text)
			}
		})
	}
}

// The detail of a diagnostic never echoes credentials, even when the code
// frame shows the line they were written on.
func TestRunnerURLCredentialsNotInDetail(t *testing.T) {
	src := cpuVariant + strings.Replace(tail, "https://mirror.example/runner", "https://bob:s3cretpw@mirror.example/runner", 1)
	_, _, diags := load(t, src, Options{})
	for _, d := range diags {
		if strings.Contains(d.Detail, "s3cretpw") || strings.Contains(d.Summary, "s3cretpw") {
			t.Errorf("diagnostic echoes the password: %s: %s", d.Summary, d.Detail)
		}
	}
}
