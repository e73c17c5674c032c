package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// fakeBuilder pushes a random image by digest to the variant's repository
// (when a registry is given), or fails for the variants in fail.
type fakeBuilder struct {
	fail    map[string]error
	delay   time.Duration
	running atomic.Int32
	maxSeen atomic.Int32
	calls   atomic.Int32
}

func (f *fakeBuilder) Build(ctx context.Context, req *Request) (*Result, error) {
	f.calls.Add(1)
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := f.fail[req.Variant.Name]; err != nil {
		return nil, err
	}
	img, err := random.Image(64, 1)
	if err != nil {
		return nil, err
	}
	d, _ := img.Digest()
	if req.Output.Push {
		repo, err := name.NewRepository(req.Variant.Image)
		if err != nil {
			return nil, err
		}
		if err := remote.Write(repo.Digest(d.String()), img, remote.WithContext(ctx)); err != nil {
			return nil, err
		}
	}
	return &Result{Digest: d.String()}, nil
}

func requests(image string, names ...string) []*Request {
	var out []*Request
	for _, n := range names {
		out = append(out, &Request{
			Variant: &variants.Variant{Name: n, Image: image, Tags: []string{image + ":dev-" + n, image + ":latest-" + n}},
			Output:  Output{Push: true, ByDigest: true},
		})
	}
	return out
}

func TestJobLimit(t *testing.T) {
	for _, jobs := range []int{1, 2, 0} {
		t.Run(fmt.Sprint(jobs), func(t *testing.T) {
			fb := &fakeBuilder{delay: 30 * time.Millisecond}
			reqs := requests("example.invalid/x", "a", "b", "c", "d", "e")
			for _, r := range reqs {
				r.Output = Output{}
			}
			res, err := Run(context.Background(), fb, reqs, Options{Jobs: jobs})
			if err != nil {
				t.Fatal(err)
			}
			want := int32(jobs)
			if jobs == 0 {
				want = 5
			}
			if got := fb.maxSeen.Load(); got != want {
				t.Errorf("max concurrent builds = %d, want %d", got, want)
			}
			if len(res) != 5 || res[0].Variant != "a" || res[4].Variant != "e" {
				t.Errorf("results not sorted: %v", res)
			}
		})
	}
}

func newRegistry(t *testing.T) (host string) {
	t.Helper()
	s := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func TestAtomicTagsAfterAllSucceed(t *testing.T) {
	host := newRegistry(t)
	image := host + "/runpod/worker"
	fb := &fakeBuilder{}
	rc := &registry.Client{}
	res, err := Run(context.Background(), fb, requests(image, "cpu", "gpu"), Options{Jobs: 2, Tagger: rc})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Tagged {
			t.Errorf("%s not tagged", r.Variant)
		}
		for _, tag := range r.Tags {
			d, err := rc.Resolve(context.Background(), tag)
			if err != nil || d != r.Digest {
				t.Errorf("%s -> %s, %v; want %s", tag, d, err, r.Digest)
			}
		}
	}
}

func TestFailedVariantMovesNoTag(t *testing.T) {
	host := newRegistry(t)
	image := host + "/runpod/worker"
	rc := &registry.Client{}
	// A first, good run publishes latest-cpu.
	if _, err := Run(context.Background(), &fakeBuilder{}, requests(image, "cpu"), Options{Tagger: rc}); err != nil {
		t.Fatal(err)
	}
	before, err := rc.Resolve(context.Background(), image+":latest-cpu")
	if err != nil {
		t.Fatal(err)
	}
	// The next run builds cpu fine but gpu fails: nothing may move.
	fb := &fakeBuilder{fail: map[string]error{"gpu": errors.New("runner checksum mismatch")}}
	res, err := Run(context.Background(), fb, requests(image, "cpu", "gpu"), Options{Tagger: rc})
	var me *MatrixError
	if !errors.As(err, &me) || len(me.Failed) != 1 || me.Failed[0].Variant != "gpu" {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "variant gpu: runner checksum mismatch") {
		t.Errorf("error does not name the variant and cause: %v", err)
	}
	if len(res) != 1 || res[0].Variant != "cpu" || res[0].Tagged {
		t.Errorf("results = %+v", res)
	}
	after, _ := rc.Resolve(context.Background(), image+":latest-cpu")
	if after != before {
		t.Errorf("latest-cpu moved from %s to %s after a failed matrix", before, after)
	}
	if _, err := rc.Resolve(context.Background(), image+":latest-gpu"); err == nil {
		t.Error("latest-gpu exists after its build failed")
	}
	if fb.calls.Load() != 2 {
		t.Errorf("builds = %d: every variant runs to its end", fb.calls.Load())
	}
}

func TestTagsInAnotherRepository(t *testing.T) {
	host := newRegistry(t)
	image := host + "/runpod/worker"
	reqs := requests(image, "cpu")
	reqs[0].Variant.Tags = append(reqs[0].Variant.Tags, host+"/mirror/worker:dev-cpu")
	rc := &registry.Client{}
	res, err := Run(context.Background(), &fakeBuilder{}, reqs, Options{Tagger: rc})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := rc.Resolve(context.Background(), host+"/mirror/worker:dev-cpu"); err != nil || d != res[0].Digest {
		t.Fatalf("mirror tag: %s %v", d, err)
	}
}

func TestTaggingFailureIsReported(t *testing.T) {
	host := newRegistry(t)
	image := host + "/runpod/worker"
	reqs := requests(image, "cpu")
	reqs[0].Output.Push = false // nothing pushed: the tagger cannot find the digest
	_, err := Run(context.Background(), &fakeBuilder{}, reqs, Options{Tagger: &registry.Client{Timeout: 5 * time.Second}})
	var me *MatrixError
	if !errors.As(err, &me) || !me.Tagging || !strings.Contains(err.Error(), "tagging failed") {
		t.Fatalf("err = %v", err)
	}
}

func TestCancelStopsWaitingBuilds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	fb := &fakeBuilder{delay: time.Hour}
	var once sync.Once
	done := make(chan error)
	go func() {
		_, err := Run(ctx, fb, requests("example.invalid/x", "a", "b", "c"), Options{Jobs: 1, OnStart: func(string) { once.Do(cancel) }})
		done <- err
	}()
	select {
	case err := <-done:
		var me *MatrixError
		if !errors.As(err, &me) || len(me.Failed) != 3 {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
