package imagegen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/build"
	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// The test binary re-executed as a child process runs one of these,
// chosen by $IMAGEGEN_SIGNAL_CHILD, under Run's signal handling.
func init() {
	switch os.Getenv("IMAGEGEN_SIGNAL_CHILD") {
	case "tag":
		os.Exit(signalChildTag(os.Getenv("IMAGEGEN_SIGNAL_IMAGE")))
	case "render":
		os.Exit(signalChildRender(os.Getenv("IMAGEGEN_SIGNAL_OUT")))
	}
}

// pushBuilder pushes a new random image by digest, as BuildKit does with
// --push in atomic mode.
type pushBuilder struct{}

func (pushBuilder) Capabilities() build.Capabilities { return build.Capabilities{Name: "push"} }

func (pushBuilder) Build(ctx context.Context, req *build.Request) (*build.Result, error) {
	img, err := random.Image(64, 1)
	if err != nil {
		return nil, err
	}
	d, _ := img.Digest()
	repo, err := name.NewRepository(req.Variant.Image)
	if err != nil {
		return nil, err
	}
	if err := remote.Write(repo.Digest(d.String()), img, remote.WithContext(ctx)); err != nil {
		return nil, err
	}
	return &build.Result{Digest: d.String()}, nil
}

func signalRequests(image string) []*build.Request {
	var reqs []*build.Request
	for _, n := range []string{"cpu", "gpu"} {
		reqs = append(reqs, &build.Request{
			Variant: &variants.Variant{Name: n, Image: image, Tags: []string{image + ":dev-" + n, image + ":latest-" + n}},
			Output:  build.PushByDigest(),
		})
	}
	return reqs
}

func signalChildTag(image string) int {
	ctx, stop := signalContext(os.Stderr)
	defer stop()
	res, err := build.Run(ctx, pushBuilder{}, signalRequests(image), build.Options{Tagger: &registry.Client{Timeout: time.Minute}})
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// signalChildRender renders with a SIGINT arriving between two renames.
func signalChildRender(out string) int {
	ctx, stop := signalContext(os.Stderr)
	defer stop()
	n := 0
	renameFile = func(from, to string) error {
		if n++; n == 1 {
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			time.Sleep(200 * time.Millisecond)
		}
		return os.Rename(from, to)
	}
	return MainContext(ctx, []string{"-f", realFile, "render", "--no-lint", "--out", out}, os.Stdout, os.Stderr)
}

func startChild(t *testing.T, env ...string) (*exec.Cmd, *strings.Builder, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &o, &e
}

func waitChild(t *testing.T, cmd *exec.Cmd, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("child still running after %s", limit)
		return nil
	}
}

// SIGINT in the middle of the tagging pass (the write of latest-gpu hangs)
// puts every tag back where it was, within RollbackGrace, instead of
// killing imagegen with dev-cpu, dev-gpu and latest-cpu moved.
func TestSIGINTDuringTaggingPutsEveryTagBack(t *testing.T) {
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	hung := make(chan struct{}, 1)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/latest-gpu") {
			select {
			case hung <- struct{}{}:
				io.Copy(io.Discard, r.Body) // so the server notices the client leave
				select {                    // hang until the client gives up
				case <-r.Context().Done():
				case <-time.After(30 * time.Second):
				}
				return
			default:
			}
		}
		reg.ServeHTTP(w, r)
	}))
	defer s.Close()
	image := strings.TrimPrefix(s.URL, "http://") + "/runpod/worker"
	rc := &registry.Client{Timeout: 30 * time.Second}

	// The tags exist, except latest-gpu (new: the write that hangs).
	if _, err := build.Run(context.Background(), pushBuilder{}, signalRequests(image)[:1], build.Options{Tagger: rc}); err != nil {
		t.Fatal(err)
	}
	reqs := signalRequests(image)
	reqs[1].Variant.Tags = reqs[1].Variant.Tags[:1]
	if _, err := build.Run(context.Background(), pushBuilder{}, reqs[1:], build.Options{Tagger: rc}); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, tag := range []string{"dev-cpu", "latest-cpu", "dev-gpu", "latest-gpu"} {
		before[tag], _ = rc.Resolve(context.Background(), image+":"+tag)
	}
	if before["latest-gpu"] != "" || before["dev-gpu"] == "" {
		t.Fatalf("setup: %v", before)
	}

	cmd, stdout, stderr := startChild(t, "IMAGEGEN_SIGNAL_CHILD=tag", "IMAGEGEN_SIGNAL_IMAGE="+image)
	select {
	case <-hung:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the child never wrote latest-gpu:\n%s", stderr)
	}
	signalled := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := waitChild(t, cmd, 30*time.Second)
	took := time.Since(signalled)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("child: %v, want exit 1\n%s", err, stderr)
	}
	if took > registry.RollbackGrace+2*time.Second {
		t.Errorf("the child took %s after SIGINT; CI kills it after 7.5 s", took)
	}
	for tag, want := range before {
		got, _ := rc.Resolve(context.Background(), image+":"+tag)
		if got != want {
			t.Errorf("%s -> %q after SIGINT, was %q\nstderr:\n%s", tag, got, want, stderr)
		}
	}
	var res []*build.Result
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil || len(res) != 2 {
		t.Fatalf("child's results: %v %q", err, stdout)
	}
	for _, r := range res {
		for _, tr := range r.TagResults {
			if tr.Kept() {
				t.Errorf("%+v after SIGINT", tr)
			}
		}
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say it was interrupted:\n%s", stderr)
	}
}

// SIGINT while render renames its files does not stop it half-way: every
// file is written.
func TestSIGINTDuringRenderCommitFinishes(t *testing.T) {
	out := t.TempDir()
	cmd, _, stderr := startChild(t, "IMAGEGEN_SIGNAL_CHILD=render", "IMAGEGEN_SIGNAL_OUT="+out)
	if err := waitChild(t, cmd, 60*time.Second); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr)
	}
	files := []string{"cpu.Dockerfile", "gpu.Dockerfile", "scaler.Dockerfile"}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != len(files) {
		t.Errorf("%d entries in the output folder, want %d (no temporary file left)", len(entries), len(files))
	}
}
