package build

import (
	"context"
	"strings"
	"testing"
	"time"
)

// An Output is made only through its constructors: an OCI layout needs an
// absolute folder, and each kind describes itself one way.
func TestOutputConstructors(t *testing.T) {
	for _, bad := range []string{"", "out/oci/cpu"} {
		if _, err := OCILayout(bad); err == nil {
			t.Errorf("OCILayout(%q) accepted", bad)
		}
	}
	o, err := OCILayout("/out/oci/cpu/")
	if err != nil || o.Kind() != OCILayoutKind || o.Dir() != "/out/oci/cpu" || o.Pushes() || o.String() != "/out/oci/cpu" {
		t.Errorf("OCILayout: %+v %v", o, err)
	}
	for _, tc := range []struct {
		o    Output
		kind OutputKind
		s    string
	}{
		{PushByDigest(), PushByDigestKind, "push by digest, tags after all"},
		{PushTags(), PushTagsKind, "push (tags at once)"},
	} {
		if tc.o.Kind() != tc.kind || !tc.o.Pushes() || tc.o.Dir() != "" || tc.o.String() != tc.s {
			t.Errorf("%v: kind %d, pushes %v, dir %q", tc.o, tc.o.Kind(), tc.o.Pushes(), tc.o.Dir())
		}
	}
}

// A request without an output (the zero Output) is refused before anything
// is built.
func TestRunRefusesNoOutput(t *testing.T) {
	fb := &fakeBuilder{}
	reqs := requests("example.invalid/x", "a", "b")
	reqs[1].Output = Output{}
	_, err := Run(context.Background(), fb, reqs, Options{})
	if err == nil || !strings.Contains(err.Error(), "variant b has no output") || fb.calls.Load() != 0 {
		t.Fatalf("err = %v, %d builds", err, fb.calls.Load())
	}
}

// A backend's MaxJobs caps the builds running at once whatever --jobs
// says (Kaniko: one).
func TestRunHonoursMaxJobs(t *testing.T) {
	for _, jobs := range []int{0, 3} {
		fb := &fakeBuilder{delay: 20 * time.Millisecond, caps: Capabilities{Name: "Fake", MaxJobs: 1}}
		reqs := requests("example.invalid/x", "a", "b", "c")
		for _, r := range reqs {
			r.Output = layout(t)
		}
		if _, err := Run(context.Background(), fb, reqs, Options{Jobs: jobs}); err != nil {
			t.Fatal(err)
		}
		if got := fb.maxSeen.Load(); got != 1 {
			t.Errorf("--jobs %d: %d builds at once, want 1", jobs, got)
		}
	}
}

// Secrets given to a backend without them are refused before building,
// never dropped.
func TestRunRefusesSecretsWithoutSupport(t *testing.T) {
	fb := &fakeBuilder{caps: Capabilities{Name: "Fake"}}
	reqs := requests("example.invalid/x", "a")
	reqs[0].Secrets = map[string][]byte{"runner_netrc": []byte("s3cret")}
	_, err := Run(context.Background(), fb, reqs, Options{})
	if err == nil || !strings.Contains(err.Error(), "Fake has no build secrets") || strings.Contains(err.Error(), "s3cret") || fb.calls.Load() != 0 {
		t.Fatalf("err = %v, %d builds", err, fb.calls.Load())
	}
	fb.caps.Secrets = true
	reqs[0].Output = layout(t)
	if _, err := Run(context.Background(), fb, reqs, Options{}); err != nil {
		t.Fatal(err)
	}
}

// Named contexts given to a backend without them (Kaniko) are refused
// before building: the Dockerfile would compile the worker instead.
func TestRunRefusesNamedContextsWithoutSupport(t *testing.T) {
	fb := &fakeBuilder{caps: Capabilities{Name: "Fake"}}
	reqs := requests("example.invalid/x", "a")
	reqs[0].Output = layout(t)
	reqs[0].NamedContexts = map[string]string{"worker": t.TempDir()}
	_, err := Run(context.Background(), fb, reqs, Options{})
	if err == nil || !strings.Contains(err.Error(), "Fake has no named contexts") || fb.calls.Load() != 0 {
		t.Fatalf("err = %v, %d builds", err, fb.calls.Load())
	}
	fb.caps.NamedContexts = true
	if _, err := Run(context.Background(), fb, reqs, Options{}); err != nil {
		t.Fatal(err)
	}
}
