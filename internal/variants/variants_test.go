package variants

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

const (
	sumA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sumB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// tail is appended to test snippets, so positions in a snippet are the same
// as in the test source.
const tail = `
runner {
  version = "2.337.0"
  url     = "https://mirror.example/runner"
  sha256  = { "linux/amd64" = "` + sumA + `" }
}
kaniko {
  version = "v1.23.2"
  image   = "gcr.io/kaniko-project/executor:v1.23.2"
}
`

func load(t *testing.T, src string, opts Options) (*Matrix, string, hcl.Diagnostics) {
	t.Helper()
	if opts.LookupEnv == nil {
		opts.LookupEnv = func(string) (string, bool) { return "", false }
	}
	m, files, diags := Load([]Source{{Name: "test.hcl", Data: []byte(src)}}, opts)
	return m, FormatDiagnostics(files, diags), diags
}

func mustLoad(t *testing.T, src string, opts Options) *Matrix {
	t.Helper()
	m, text, diags := load(t, src, opts)
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", text)
	}
	return m
}

func names(m *Matrix) []string {
	var out []string
	for _, v := range m.Variants {
		out = append(out, v.Name)
	}
	return out
}

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const cpuVariant = `
variant "cpu" {
  flavour = "cpu"
  base    = "ubuntu:24.04"
  image   = "registry.example/team/worker"
  tags    = ["dev-cpu"]
}
`

func TestResolveBasics(t *testing.T) {
	m := mustLoad(t, cpuVariant+tail, Options{})
	if got := names(m); !reflect.DeepEqual(got, []string{"cpu"}) {
		t.Fatalf("names = %v", got)
	}
	v := m.Variants[0]
	want := &Variant{
		Name: "cpu", Flavour: "cpu", Base: "ubuntu:24.04", Platforms: []string{"linux/amd64"},
		Image: "registry.example/team/worker", Tags: []string{"registry.example/team/worker:dev-cpu"},
		Labels: map[string]string{}, Args: map[string]string{}, RunnerPackages: []string{}, Packages: []string{},
		Runner: RunnerRelease{Version: "2.337.0", URL: "https://mirror.example/runner", SHA256: map[string]string{"linux/amd64": sumA}},
		Kaniko: Kaniko{Version: "v1.23.2", Image: "gcr.io/kaniko-project/executor:v1.23.2"},
		Golang: DefaultGolang, Compression: CompressionGzip,
		Source: "test.hcl:2:1",
	}
	got := *v
	got.namePos, got.pos, got.listPos, got.mapPos, got.runPos, got.setBy = hcl.Range{}, nil, nil, nil, runnerPos{}, nil
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("variant:\n got %+v\nwant %+v", got, *want)
	}
}

func TestVariables(t *testing.T) {
	src := `
variable "REGISTRY" { default = "docker.io/${ORG}" }
variable "ORG"      { default = "runpod" }
variable "RELEASE"  { default = "dev" }
variable "PKGS" {
  type    = list(string)
  default = ["git"]
}
variable "JOBS" {
  type    = number
  default = 2
}
variable "PUSH" { default = false }
variable "EXTRA" {
  type    = map(string)
  default = {}
}
variant "cpu" {
  flavour  = "cpu"
  base     = "ubuntu:24.04"
  image    = "${REGISTRY}/worker"
  tags     = ["${RELEASE}-cpu", RELEASE == "dev" ? null : "latest-cpu", "jobs-${JOBS}", PUSH ? "push" : null]
  packages = PKGS
  labels   = EXTRA
}
` + tail
	tests := []struct {
		name     string
		env      []string
		vars     []string
		tags     []string
		packages []string
		labels   map[string]string
	}{
		{name: "defaults", tags: []string{"docker.io/runpod/worker:dev-cpu", "docker.io/runpod/worker:jobs-2"}, packages: []string{"git"}},
		{name: "env string", env: []string{"RELEASE", "v1.0.0"}, tags: []string{"docker.io/runpod/worker:jobs-2", "docker.io/runpod/worker:latest-cpu", "docker.io/runpod/worker:v1.0.0-cpu"}, packages: []string{"git"}},
		{name: "env feeds another default", env: []string{"ORG", "me"}, tags: []string{"docker.io/me/worker:dev-cpu", "docker.io/me/worker:jobs-2"}, packages: []string{"git"}},
		{name: "env list as JSON", env: []string{"PKGS", `["jq","curl"]`}, tags: []string{"docker.io/runpod/worker:dev-cpu", "docker.io/runpod/worker:jobs-2"}, packages: []string{"curl", "jq"}},
		{name: "env number and inferred bool", env: []string{"JOBS", "8", "PUSH", "true"}, tags: []string{"docker.io/runpod/worker:dev-cpu", "docker.io/runpod/worker:jobs-8", "docker.io/runpod/worker:push"}, packages: []string{"git"}},
		{name: "--var wins over env", env: []string{"RELEASE", "v1.0.0"}, vars: []string{"RELEASE=v2.0.0"}, tags: []string{"docker.io/runpod/worker:jobs-2", "docker.io/runpod/worker:latest-cpu", "docker.io/runpod/worker:v2.0.0-cpu"}, packages: []string{"git"}},
		{name: "map from --var", vars: []string{`EXTRA={"a":"b"}`}, tags: []string{"docker.io/runpod/worker:dev-cpu", "docker.io/runpod/worker:jobs-2"}, packages: []string{"git"}, labels: map[string]string{"a": "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustLoad(t, src, Options{LookupEnv: env(tc.env...), Vars: tc.vars})
			v := m.Variants[0]
			if !reflect.DeepEqual(v.Tags, tc.tags) {
				t.Errorf("tags = %v, want %v", v.Tags, tc.tags)
			}
			if !reflect.DeepEqual(v.Packages, tc.packages) {
				t.Errorf("packages = %v, want %v", v.Packages, tc.packages)
			}
			if tc.labels == nil {
				tc.labels = map[string]string{}
			}
			if !reflect.DeepEqual(v.Labels, tc.labels) {
				t.Errorf("labels = %v, want %v", v.Labels, tc.labels)
			}
		})
	}
}

func TestFunctions(t *testing.T) {
	src := `
variable "NAME" { default = "Worker" }
variant "cpu" {
  flavour  = "cpu"
  base     = format("%s:%s", "ubuntu", "24.04")
  image    = lower("registry.example/${NAME}")
  tags     = concat([upper("a")], split(",", "b,c"), [replace("d-x", "-x", ""), join("-", ["e", "f"])],
                    [coalesce(null, "g")], contains(["x"], "x") ? ["h"] : [], [trimprefix("vi", "v")], [substr("jklm", 0, 1)])
  labels   = merge({ a = "1" }, { b = title("two") })
}
` + tail
	v := mustLoad(t, src, Options{}).Variants[0]
	if v.Base != "ubuntu:24.04" || v.Image != "registry.example/worker" {
		t.Fatalf("base %q image %q", v.Base, v.Image)
	}
	var short []string
	for _, tg := range v.Tags {
		short = append(short, strings.TrimPrefix(tg, v.Image+":"))
	}
	if want := []string{"A", "b", "c", "d", "e-f", "g", "h", "i", "j"}; !reflect.DeepEqual(short, want) {
		t.Fatalf("tags = %v, want %v", short, want)
	}
	if want := map[string]string{"a": "1", "b": "Two"}; !reflect.DeepEqual(v.Labels, want) {
		t.Fatalf("labels = %v", v.Labels)
	}
}

func TestMatrix(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		names []string
	}{
		{
			name:  "product sorted, name expression",
			body:  `matrix = { py = ["3.12", "3.11"], cuda = ["12.8.1", "12.6.3"] }` + "\n" + `name = "gpu-${cuda}-py${py}"` + "\n" + `tags = ["${cuda}-py${py}"]`,
			names: []string{"gpu-12.6.3-py3.11", "gpu-12.6.3-py3.12", "gpu-12.8.1-py3.11", "gpu-12.8.1-py3.12"},
		},
		{
			name:  "default name joins values in key order",
			body:  `matrix = { cuda = ["12.6.3", "12.8.1"], py = ["3.12"] }` + "\n" + `tags = ["${cuda}"]`,
			names: []string{"gpu-12.6.3-3.12", "gpu-12.8.1-3.12"},
		},
		{
			name:  "exclude",
			body:  `matrix = { cuda = ["12.6.3", "12.8.1"], py = ["3.11", "3.12"] }` + "\n" + `exclude = [{ cuda = "12.6.3", py = "3.12" }, { py = "3.11", cuda = "12.8.1" }]` + "\n" + `tags = ["${cuda}"]`,
			names: []string{"gpu-12.6.3-3.11", "gpu-12.8.1-3.12"},
		},
		{
			name:  "include adds, duplicates ignored",
			body:  `matrix = { cuda = ["12.6.3"] }` + "\n" + `include = [{ cuda = "11.8.0" }, { cuda = "12.6.3" }]` + "\n" + `tags = ["${cuda}"]`,
			names: []string{"gpu-11.8.0", "gpu-12.6.3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := `
variant "gpu" {
  ` + tc.body + `
  flavour = "gpu"
  cuda    = cuda
  base    = "nvidia/cuda:${cuda}-cudnn-runtime-ubuntu24.04"
  image   = "registry.example/worker"
}
` + tail
			m := mustLoad(t, src, Options{})
			if got := names(m); !reflect.DeepEqual(got, tc.names) {
				t.Fatalf("names = %v, want %v", got, tc.names)
			}
			for _, v := range m.Variants {
				if v.CUDA != v.Matrix["cuda"] || !strings.Contains(v.Base, v.CUDA) {
					t.Errorf("%s: cuda %q base %q matrix %v", v.Name, v.CUDA, v.Base, v.Matrix)
				}
			}
		})
	}
}

func TestMatrixDeterministic(t *testing.T) {
	src := `
variant "gpu" {
  matrix  = { a = ["3", "1", "2"], b = ["z", "y"] }
  name    = "v-${a}-${b}"
  flavour = "cpu"
  base    = "ubuntu:24.04"
  image   = "registry.example/worker"
  tags    = ["${a}${b}"]
}
` + tail
	first := names(mustLoad(t, src, Options{}))
	for i := 0; i < 20; i++ {
		if got := names(mustLoad(t, src, Options{})); !reflect.DeepEqual(got, first) {
			t.Fatalf("run %d: %v != %v", i, got, first)
		}
	}
	if want := []string{"v-1-y", "v-1-z", "v-2-y", "v-2-z", "v-3-y", "v-3-z"}; !reflect.DeepEqual(first, want) {
		t.Fatalf("names = %v, want %v", first, want)
	}
}

func TestInherits(t *testing.T) {
	src := `
variant "common" {
  abstract = true
  image    = "registry.example/worker"
  base     = "ubuntu:24.04"
  packages = ["git"]
  labels   = { team = "ml" }
}
variant "extra" {
  abstract = true
  packages = ["ffmpeg"]
}
variant "cpu" {
  inherits = ["common"]
  flavour  = "cpu"
  tags     = ["cpu"]
}
variant "cpu-media" {
  inherits = ["common", "extra"]
  flavour  = "cpu"
  tags     = ["cpu-media"]
}
variant "gpu" {
  inherits = ["cpu"]
  flavour  = "gpu"
  cuda     = "12.6.3"
  base     = "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"
  tags     = ["gpu"]
}
` + tail
	m := mustLoad(t, src, Options{})
	if got, want := names(m), []string{"cpu", "cpu-media", "gpu"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("names = %v, want %v (abstract variants are not built)", got, want)
	}
	if p := m.Find("cpu-media").Packages; !reflect.DeepEqual(p, []string{"ffmpeg"}) {
		t.Errorf("cpu-media packages = %v: the later parent wins", p)
	}
	gpu := m.Find("gpu")
	if gpu.Base != "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04" || gpu.Labels["team"] != "ml" || gpu.Packages[0] != "git" {
		t.Errorf("gpu = %+v", gpu)
	}
}

func TestSet(t *testing.T) {
	src := `
variant "gpu" {
  matrix  = { cuda = ["12.6.3", "12.8.1"] }
  flavour = "gpu"
  cuda    = cuda
  base    = "nvidia/cuda:${cuda}-cudnn-runtime-ubuntu24.04"
  image   = "registry.example/worker"
  tags    = ["${cuda}"]
  packages = ["git"]
}
` + cpuVariant + tail
	m := mustLoad(t, src, Options{Sets: []string{
		"gpu-*.packages+=ffmpeg, sox",
		"*.labels.org.example.team=ml",
		"cpu.tags=a,b",
		"gpu-12.8.1.base=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04",
		"cpu.image=127.0.0.1:5000/worker",
	}})
	g := m.Find("gpu-12.6.3")
	if !reflect.DeepEqual(g.Packages, []string{"ffmpeg", "git", "sox"}) || g.Labels["org.example.team"] != "ml" {
		t.Errorf("gpu-12.6.3 = %v %v", g.Packages, g.Labels)
	}
	if b := m.Find("gpu-12.8.1").Base; b != "nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04" {
		t.Errorf("base = %s", b)
	}
	if c := m.Find("cpu"); !reflect.DeepEqual(c.Tags, []string{"127.0.0.1:5000/worker:a", "127.0.0.1:5000/worker:b"}) {
		t.Errorf("cpu tags = %v", c.Tags)
	}
}

func TestFullReferenceTags(t *testing.T) {
	src := strings.Replace(cpuVariant, `tags    = ["dev-cpu"]`, `tags = ["dev-cpu", "ghcr.io/me/worker:dev-cpu"]`, 1) + tail
	v := mustLoad(t, src, Options{}).Variants[0]
	if want := []string{"ghcr.io/me/worker:dev-cpu", "registry.example/team/worker:dev-cpu"}; !reflect.DeepEqual(v.Tags, want) {
		t.Fatalf("tags = %v", v.Tags)
	}
}

// errorCase expects a diagnostic whose summary contains summary, at pos
// (file:line:col, "" for diagnostics without a source position).
type errorCase struct {
	name    string
	src     string
	opts    Options
	summary string
	pos     string
}

func TestErrors(t *testing.T) {
	gpu := func(attrs string) string {
		return `
variant "gpu" {
  flavour = "gpu"
  image   = "registry.example/worker"
  base    = "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"
  ` + attrs + `
}
` + tail
	}
	tests := []errorCase{
		{name: "unknown block", src: "foo {}\n" + cpuVariant + tail, summary: "Unsupported block type", pos: "test.hcl:1:1"},
		{name: "unknown attribute", src: gpu(`cuda = "12.6.3"` + "\n  tags = [\"x\"]\n  platfroms = []"), summary: "Unsupported argument", pos: "test.hcl:8:3"},
		{name: "top-level attribute", src: "x = 1\n" + cpuVariant + tail, summary: "Unsupported argument", pos: "test.hcl:1:1"},
		{name: "wrong type", src: gpu(`cuda = "12.6.3"` + "\n  tags = { a = 1 }"), summary: "Incorrect attribute value type", pos: "test.hcl:7:10"},
		{name: "wrong type in list", src: gpu(`cuda = "12.6.3"` + "\n  tags = [\"a\", { b = 1 }]"), summary: "Incorrect attribute value type", pos: "test.hcl:7:16"},
		{name: "syntax error", src: "variant \"x\" {\n  tags = [\n}\n", summary: "", pos: "test.hcl:3:1"},
		{name: "duplicate variant block", src: cpuVariant + cpuVariant + tail, summary: "Duplicate variant", pos: "test.hcl:9:9"},
		{name: "duplicate variant from matrix", src: cpuVariant + `
variant "c" {
  matrix  = { x = ["u"] }
  name    = "cpu"
  flavour = "cpu"
  base    = "ubuntu:24.04"
  image   = "registry.example/team/worker"
  tags    = ["x"]
}` + tail, summary: "Duplicate variant", pos: "test.hcl:11:13"},
		{name: "inherits cycle", src: `
variant "a" {
  inherits = ["b"]
}
variant "b" {
  inherits = ["a"]
}` + cpuVariant + tail, summary: "Inheritance cycle", pos: "test.hcl:3:14"},
		{name: "unknown parent", src: `
variant "a" {
  inherits = ["cpuu"]
  flavour = "cpu"
}` + cpuVariant + tail, summary: "Unknown parent variant", pos: "test.hcl:3:15"},
		{name: "gpu without cuda", src: gpu(`tags = ["x"]`), summary: "GPU variant without CUDA", pos: "test.hcl:3:13"},
		{name: "cuda on cpu", src: strings.Replace(cpuVariant, `flavour = "cpu"`, `flavour = "cpu"`+"\n  cuda = \"12.6.3\"", 1) + tail, summary: "CUDA on a CPU variant", pos: "test.hcl:4:10"},
		{name: "malformed cuda", src: gpu(`cuda = "12.x"` + "\n  tags = [\"x\"]"), summary: "Malformed CUDA version", pos: "test.hcl:6:10"},
		{name: "platform without checksum", src: gpu(`cuda = "12.6.3"` + "\n  tags = [\"x\"]\n  platforms = [\"linux/amd64\", \"linux/arm64\"]"), summary: "Platform without runner checksum", pos: "test.hcl:8:31"},
		{name: "unsupported platform", src: gpu(`cuda = "12.6.3"` + "\n  tags = [\"x\"]\n  platforms = [\"windows/amd64\"]"), summary: "Unsupported platform", pos: "test.hcl:8:16"},
		{name: "malformed checksum", src: cpuVariant + strings.Replace(tail, sumA, "abc", 1), summary: "Malformed checksum", pos: "test.hcl:12:31"},
		{name: "invalid tag", src: gpu(`cuda = "12.6.3"` + "\n  tags = [\"ok\", \"-bad\"]"), summary: "Invalid tag", pos: "test.hcl:7:17"},
		{name: "tag too long", src: gpu(`cuda = "12.6.3"` + "\n  tags = [\"" + strings.Repeat("a", 129) + "\"]"), summary: "Invalid tag", pos: "test.hcl:7:11"},
		{name: "invalid image", src: strings.Replace(cpuVariant, "registry.example/team/worker", "Registry.example/UPPER", 1) + tail, summary: "Invalid image repository", pos: "test.hcl:5:13"},
		{name: "invalid package", src: strings.Replace(cpuVariant, `tags    = ["dev-cpu"]`, `tags = ["x"]`+"\n  packages = [\"git; rm -rf /\"]", 1) + tail, summary: "Invalid package name", pos: "test.hcl:7:15"},
		{name: "reserved arg", src: strings.Replace(cpuVariant, `tags    = ["dev-cpu"]`, `tags = ["x"]`+"\n  args = { RUNNER_VERSION = \"1\" }", 1) + tail, summary: "Reserved build argument", pos: "test.hcl:7:29"},
		{name: "missing required", src: "variant \"cpu\" {\n  flavour = \"cpu\"\n}\n" + tail, summary: "Missing required argument", pos: "test.hcl:1:1"},
		{name: "bad flavour", src: strings.Replace(cpuVariant, `flavour = "cpu"`, `flavour = "tpu"`, 1) + tail, summary: "Invalid flavour", pos: "test.hcl:3:13"},
		{name: "validation block", src: `
variable "RELEASE" {
  default = "nope"
  validation {
    condition     = RELEASE == "dev"
    error_message = "RELEASE must be dev."
  }
}` + cpuVariant + tail, summary: `Invalid value for variable "RELEASE"`, pos: "test.hcl:5:21"},
		{name: "variable cycle", src: "variable \"A\" { default = B }\nvariable \"B\" { default = A }\n" + cpuVariant + tail, summary: "Variable cycle", pos: "test.hcl:1:1"},
		{name: "unknown variable", src: strings.Replace(cpuVariant, `"ubuntu:24.04"`, `BASE`, 1) + tail, summary: "Unknown variable", pos: "test.hcl:4:13"},
		{name: "bad typed env", src: "variable \"N\" {\n  type = number\n  default = 1\n}\n" + cpuVariant + tail, opts: Options{LookupEnv: env("N", "many")}, summary: `Invalid value for variable "N" from environment variable N`, pos: "test.hcl:1:1"},
		{name: "bad JSON list", src: "variable \"L\" {\n  type = list(string)\n  default = []\n}\n" + cpuVariant + tail, opts: Options{Vars: []string{"L=git"}}, summary: `Invalid value for variable "L" from --var`, pos: "test.hcl:1:1"},
		{name: "unknown --var", src: cpuVariant + tail, opts: Options{Vars: []string{"RELASE=v1"}}, summary: "Unknown variable in --var", pos: ""},
		{name: "set unknown field", src: cpuVariant + tail, opts: Options{Sets: []string{"cpu.cudaa=1"}}, summary: "Invalid --set", pos: ""},
		{name: "set matches nothing", src: cpuVariant + tail, opts: Options{Sets: []string{"gpu.cuda=1"}}, summary: "--set matches no variant", pos: ""},
		{name: "set makes invalid", src: cpuVariant + tail, opts: Options{Sets: []string{"cpu.cuda=12.6.3"}}, summary: "CUDA on a CPU variant", pos: ""},
		{name: "exclude unknown key", src: `
variant "m" {
  matrix  = { a = ["1"] }
  exclude = [{ b = "1" }]
  flavour = "cpu"
  base    = "ubuntu:24.04"
  image   = "registry.example/worker"
  tags    = [a]
}` + cpuVariant + tail, summary: "Unknown matrix key in exclude", pos: "test.hcl:4:14"},
		{name: "name without matrix", src: strings.Replace(cpuVariant, `flavour = "cpu"`, `flavour = "cpu"`+"\n  name = \"x\"", 1) + tail, summary: "name without matrix", pos: "test.hcl:4:3"},
		{name: "missing runner block", src: cpuVariant + "kaniko {\n version = \"v1.23.2\"\n image = \"a/b:c\"\n}\n", summary: "Missing runner block", pos: ""},
		{name: "malformed runner version", src: cpuVariant + strings.Replace(tail, `"2.337.0"`, `"latest"`, 1), summary: "Malformed runner version", pos: "test.hcl:10:13"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expectError(t, tc) })
	}
}

// expectError loads tc.src and wants an error tc.summary at tc.pos.
func expectError(t *testing.T, tc errorCase) {
	t.Helper()
	m, text, diags := load(t, tc.src, tc.opts)
	if !diags.HasErrors() || m != nil {
		t.Fatalf("want an error, got none (matrix %v)", m != nil)
	}
	for _, d := range diags {
		if d.Severity != hcl.DiagError || !strings.Contains(d.Summary, tc.summary) {
			continue
		}
		pos := ""
		if d.Subject != nil {
			pos = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		if pos == tc.pos {
			if pos != "" && !strings.Contains(text, pos+": error: ") {
				t.Errorf("formatted output lacks %s:\n%s", pos, text)
			}
			return
		}
	}
	t.Fatalf("no error %q at %q in:\n%s", tc.summary, tc.pos, text)
}

func TestAllErrorsReportedTogether(t *testing.T) {
	src := `
variant "gpu" {
  flavour = "gpu"
  cuda    = "12.x"
  base    = "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"
  image   = "registry.example/worker"
  tags    = ["-bad"]
}
variant "cpu" {
  flavour   = "cpu"
  base      = "ubuntu:24.04"
  image     = "registry.example/worker"
  tags      = ["ok"]
  platforms = ["linux/arm64"]
}
` + tail
	_, text, diags := load(t, src, Options{})
	for _, want := range []string{"test.hcl:4:13: error: Malformed CUDA version", "test.hcl:7:14: error: Invalid tag", "test.hcl:14:16: error: Platform without runner checksum"} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
	if n := len(diags.Errs()); n != 3 {
		t.Errorf("%d errors, want 3:\n%s", n, text)
	}
	// A code frame with a caret under the subject.
	if !strings.Contains(text, "  4 |   cuda    = \"12.x\"\n    |             ^^^^^^") {
		t.Errorf("no code frame:\n%s", text)
	}
}

func TestExcludeMatchingNothingWarns(t *testing.T) {
	src := `
variant "m" {
  matrix  = { a = ["1", "2"] }
  exclude = [{ a = "3" }]
  flavour = "cpu"
  base    = "ubuntu:24.04"
  image   = "registry.example/worker"
  tags    = [a]
}` + tail
	m, text, diags := load(t, src, Options{})
	if m == nil || diags.HasErrors() || !strings.Contains(text, "test.hcl:4:14: warning: Exclude matches nothing") {
		t.Fatalf("want a warning and a matrix:\n%s", text)
	}
}
