package kaniko

import (
	"slices"
	"strings"
	"testing"

	"github.com/runpod-workers/worker-github_runner/internal/build"
)

// gzip levels reach Kaniko as --compression and --compression-level;
// what Kaniko cannot do reliably (zstd, uncompressed layers, forced
// re-compression) is refused before any build, by the backend's check.
func TestKanikoCompression(t *testing.T) {
	b := &Builder{o: Options{WorkDir: "/w"}}
	lvl := func(n int) *int { return &n }
	base := *matrix(t).Find("cpu")
	for _, tc := range []struct {
		name     string
		set      func(v *variantFields)
		wantArgs []string
		wantErr  string
	}{
		{"default", func(v *variantFields) {}, nil, ""},
		{"gzip level", func(v *variantFields) { v.level = lvl(9) }, []string{"--compression=gzip", "--compression-level=9"}, ""},
		{"gzip level 0", func(v *variantFields) { v.level = lvl(0) }, nil, "compression level 0"},
		{"zstd", func(v *variantFields) { v.compression = "zstd" }, nil, "zstd"},
		{"uncompressed", func(v *variantFields) { v.compression = "uncompressed" }, nil, "uncompressed"},
		{"force", func(v *variantFields) { v.force = true }, nil, "force_compression"},
	} {
		v := base
		f := variantFields{compression: "gzip"}
		tc.set(&f)
		v.Compression, v.CompressionLevel, v.ForceCompression = f.compression, f.level, f.force
		req := &build.Request{Variant: &v, ContextDir: "/ctx", Output: build.PushByDigest()}
		checkErr := Options{}.Capabilities().Check(req)
		args, err := b.Args(req)
		if tc.wantErr != "" {
			if checkErr == nil || !strings.Contains(checkErr.Error(), tc.wantErr) || !strings.Contains(checkErr.Error(), "BuildKit") {
				t.Errorf("%s: check = %v, want an error about %q that points to BuildKit", tc.name, checkErr, tc.wantErr)
			}
			if err == nil {
				t.Errorf("%s: Args accepted it", tc.name)
			}
			continue
		}
		if checkErr != nil || err != nil {
			t.Errorf("%s: check %v, args %v", tc.name, checkErr, err)
			continue
		}
		for _, a := range tc.wantArgs {
			if !slices.Contains(args, a) {
				t.Errorf("%s: args lack %s: %v", tc.name, a, args)
			}
		}
		if tc.wantArgs == nil && slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--compression") }) {
			t.Errorf("%s: compression flags for the default: %v", tc.name, args)
		}
	}
}

type variantFields struct {
	compression string
	level       *int
	force       bool
}

// Each refusal speaks of the algorithm asked for: uncompressed is not
// refused for zstd's reasons.
func TestKanikoCompressionWording(t *testing.T) {
	v := *matrix(t).Find("cpu")
	v.Compression = "uncompressed"
	err := checkCompression(&build.Request{Variant: &v})
	if err == nil || strings.Contains(err.Error(), "zstd") || !strings.Contains(err.Error(), "uncompressed") {
		t.Errorf("uncompressed: %v", err)
	}
	v.Compression = "zstd"
	err = checkCompression(&build.Request{Variant: &v})
	if err == nil || !strings.Contains(err.Error(), "zstd") || strings.Contains(err.Error(), "uncompressed") {
		t.Errorf("zstd: %v", err)
	}
}

// An extra argument may not set a flag imagegen sets itself (or one that
// would change what it builds or where it goes): the error names the flag,
// never the value.
func TestCheckExtraArgs(t *testing.T) {
	long := strings.Repeat("x", 5000)
	for arg, flag := range map[string]string{
		"--compression=zstd":               "--compression",
		"--compression-level=0":            "--compression-level",
		"--compression":                    "--compression",
		"--destination=evil.example/x":     "--destination",
		"-d=evil.example/x":                "-d",
		"-devil.example/x":                 "-d",
		"--tar-path=/tmp/x":                "--tar-path",
		"--tarPath=/tmp/x":                 "--tarPath",
		"--no-push":                        "--no-push",
		"--cache-repo=" + long:             "--cache-repo",
		"--cache=true":                     "--cache",
		"--dockerfile=/x":                  "--dockerfile",
		"-f":                               "-f",
		"--context=dir:///":                "--context",
		"-c=/":                             "-c",
		"--custom-platform=linux/arm64":    "--custom-platform",
		"--customPlatform=linux/arm64":     "--customPlatform",
		"--digest-file=/x":                 "--digest-file",
		"--image-name-with-digest-file=/x": "--image-name-with-digest-file",
		"--reproducible=false":             "--reproducible",
		"--cleanup=false":                  "--cleanup",
		"--kaniko-dir=/x":                  "--kaniko-dir",
		"--force":                          "--force",
		"--target=builder":                 "--target",
		"--build-arg=TARGETARCH=arm64":     "--build-arg=TARGETARCH",
	} {
		err := CheckExtraArgs(append([]string{"--verbosity=debug"}, strings.Split(arg, " ")...))
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%.40s: %v, want an error naming %s", arg, err, flag)
			continue
		}
		if len(err.Error()) > 300 || strings.Contains(err.Error(), "evil") {
			t.Errorf("%.40s: error echoes the value: %v", arg, err)
		}
	}
	ok := []string{"--registry-map=index.docker.io=mirror.example", "--registry-mirror=m.example", "--verbosity=debug",
		"--build-arg=HTTP_PROXY=http://p", "--insecure-registry=r.example:5000", "--label=a=b", "--compressed-caching=false",
		"--snapshot-mode=redo", "--push-retry=3", "--cache-ttl=1h", "--cache-dir=/c"}
	if err := CheckExtraArgs(ok); err != nil {
		t.Errorf("%v: %v", ok, err)
	}
}
