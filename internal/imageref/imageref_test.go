package imageref

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		ref  string
		kind Kind
		why  string // "" = valid; else a part of the reason
	}{
		{"ghcr.io/runpod/worker", Repository, ""},
		{"127.0.0.1:5000/runpod/worker:dev-cpu", Tagged, ""},
		{"ubuntu:24.04", Image, ""},
		{"nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04@sha256:" + strings.Repeat("a", 64), Image, ""},
		{"[::1]:5000/x:t", Tagged, ""},
		{"", Image, "empty"},
		{"a.b,type=local,dest=/tmp/x", Repository, "','"},
		{"a.b/x=y", Image, "'='"},
		{"a.b/$x", Image, "'$'"},
		{"a.b/\"x\"", Image, "'\"'"},
		{"a.b/x y", Image, "' '"},
		{"a.b/../x", Image, `".."`},
		{"a.b//x", Image, "empty path component"},
		{"localhost:0/x", Image, "between 1 and 65535"},
		{"localhost:65536/x", Image, "between 1 and 65535"},
		{"localhost:99999/x:c", Image, "between 1 and 65535"},
		{"localhost:080/x", Image, "leading zero"},
		{"a.b/Upper", Image, "lower-case"},
		{"a.b/x:t", Repository, "tag or digest"},
		{"a.b/x", Tagged, "needs a tag"},
		{strings.Repeat("a", 64), Image, "image ID"},
	} {
		got := Check(c.ref, c.kind)
		switch {
		case c.why == "" && got != "":
			t.Errorf("Check(%q) = %q, want valid", c.ref, got)
		case c.why != "" && !strings.Contains(got, c.why):
			t.Errorf("Check(%q) = %q, want a reason with %q", c.ref, got, c.why)
		}
	}
}

func TestNormalised(t *testing.T) {
	if a, b := Normalised("x/y:t"), Normalised("docker.io/x/y:t"); a != b {
		t.Errorf("x/y:t → %s, docker.io/x/y:t → %s: want the same", a, b)
	}
}
