package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// fakeBuilder pushes a random image by digest to the variant's repository
// (when a registry is given), or fails for the variants in fail.
type fakeBuilder struct {
	fixed   bool // the same image for a variant every time
	fail    map[string]error
	delay   time.Duration
	running atomic.Int32
	maxSeen atomic.Int32
	calls   atomic.Int32
	// started and finished, when set, are called as each build starts and
	// ends.
	started, finished func()
	caps              Capabilities
}

func (f *fakeBuilder) Capabilities() Capabilities { return f.caps }

// layout is an OCI layout output for tests.
func layout(t *testing.T) Output {
	o, err := OCILayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (f *fakeBuilder) Build(ctx context.Context, req *Request) (*Result, error) {
	if f.started != nil {
		f.started()
	}
	if f.finished != nil {
		defer f.finished()
	}
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
	img, err := f.image(req.Variant.Name)
	if err != nil {
		return nil, err
	}
	d, _ := img.Digest()
	if req.Output.Pushes() {
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

func (f *fakeBuilder) image(variant string) (v1.Image, error) {
	if !f.fixed {
		return random.Image(64, 1)
	}
	return mutate.Config(empty.Image, v1.Config{Labels: map[string]string{"variant": variant}})
}

func requests(image string, names ...string) []*Request {
	var out []*Request
	for _, n := range names {
		out = append(out, &Request{
			Variant: &variants.Variant{Name: n, Image: image, Tags: []string{image + ":dev-" + n, image + ":latest-" + n}},
			Output:  PushByDigest(),
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
				r.Output = layout(t)
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
	reqs[0].Output = layout(t) // nothing pushed: the tagger cannot find the digest
	_, err := Run(context.Background(), &fakeBuilder{}, reqs, Options{Tagger: &registry.Client{Timeout: 5 * time.Second}})
	var me *MatrixError
	if !errors.As(err, &me) || !me.Tagging || !strings.Contains(err.Error(), "tagging failed") {
		t.Fatalf("err = %v", err)
	}
}

func TestCancelStopsWaitingBuilds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	fb := &fakeBuilder{delay: time.Hour, started: func() { once.Do(cancel) }}
	done := make(chan error)
	go func() {
		_, err := Run(ctx, fb, requests("example.invalid/x", "a", "b", "c"), Options{Jobs: 1})
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

// faultyRegistry is an in-process registry behind a middleware that fails
// the manifest PUT of the tags in failTag (400: a status go-containerregistry
// does not retry), the DELETE of those in failDelete, and every write to the
// repositories in deny (403), and records the tags written, in order.
type faultyRegistry struct {
	host       string
	mu         sync.Mutex
	failTag    map[string]bool  // "repo:tag"
	failDelete map[string]bool  // "repo:tag"
	deny       map[string]bool  // "repo"
	puts       []string         // "repo:tag" of every manifest PUT by tag
	onPut      func(tag string) // called before a manifest PUT by tag is served
	// failBody, when set, is the body of the failTag answer (instead of a
	// registry's JSON error).
	failBody string
	// unreadableAfterFail: once a tag's PUT failed, reading it fails (400).
	unreadableAfterFail bool
	unreadable          map[string]bool // "repo:tag"
}

func newFaultyRegistry(t *testing.T) *faultyRegistry {
	t.Helper()
	fr := &faultyRegistry{failTag: map[string]bool{}, failDelete: map[string]bool{}, deny: map[string]bool{}, unreadable: map[string]bool{}}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/v2/")
		fr.mu.Lock()
		defer fr.mu.Unlock()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			for repo := range fr.deny {
				if strings.HasPrefix(p, repo+"/") {
					http.Error(w, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`, http.StatusForbidden)
					return
				}
			}
		}
		if repo, ref, ok := strings.Cut(p, "/manifests/"); ok && r.Method == http.MethodDelete && fr.failDelete[repo+":"+ref] {
			http.Error(w, `{"errors":[{"code":"UNSUPPORTED","message":"deleting tags is not supported"}]}`, http.StatusMethodNotAllowed)
			return
		}
		if repo, ref, ok := strings.Cut(p, "/manifests/"); ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) && fr.unreadable[repo+":"+ref] {
			body := `{"errors":[{"code":"UNKNOWN","message":"injected read failure"}]}`
			if fr.failBody != "" {
				body = fr.failBody
			}
			http.Error(w, body, http.StatusBadRequest)
			return
		}
		if repo, ref, ok := strings.Cut(p, "/manifests/"); ok && r.Method == http.MethodPut && !strings.HasPrefix(ref, "sha256:") {
			if fr.failTag[repo+":"+ref] {
				fr.unreadable[repo+":"+ref] = fr.unreadableAfterFail
				body := `{"errors":[{"code":"MANIFEST_INVALID","message":"injected failure"}]}`
				if fr.failBody != "" {
					body = fr.failBody
				}
				http.Error(w, body, http.StatusBadRequest)
				return
			}
			fr.puts = append(fr.puts, repo+":"+ref)
			if fr.onPut != nil {
				fr.onPut(repo + ":" + ref)
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	fr.host = strings.TrimPrefix(s.URL, "http://")
	return fr
}

func (fr *faultyRegistry) written() []string {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return append([]string(nil), fr.puts...)
}

// resolveOrEmpty is the digest a tag points at, "" when it does not exist.
func resolveOrEmpty(t *testing.T, rc *registry.Client, ref string) string {
	t.Helper()
	d, err := rc.Resolve(context.Background(), ref)
	if err != nil {
		return ""
	}
	return d
}

// A tag write failing half-way puts back every tag already moved: to its
// previous digest, or deleted when it did not exist before.
func TestTagFailurePutsBackEveryTag(t *testing.T) {
	fr := newFaultyRegistry(t)
	image := fr.host + "/runpod/worker"
	rc := &registry.Client{Timeout: 30 * time.Second}
	if _, err := Run(context.Background(), &fakeBuilder{}, requests(image, "cpu"), Options{Tagger: rc}); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, tag := range []string{"dev-cpu", "latest-cpu", "dev-gpu", "latest-gpu"} {
		before[tag] = resolveOrEmpty(t, rc, image+":"+tag)
	}
	fr.failTag["runpod/worker:latest-gpu"] = true
	res, err := Run(context.Background(), &fakeBuilder{}, requests(image, "cpu", "gpu"), Options{Tagger: rc})
	var me *MatrixError
	if !errors.As(err, &me) || !me.Tagging {
		t.Fatalf("err = %v, want a tagging failure", err)
	}
	for tag, want := range before {
		if got := resolveOrEmpty(t, rc, image+":"+tag); got != want {
			t.Errorf("%s points at %q after a failed tagging pass, was %q", tag, got, want)
		}
	}
	if !strings.Contains(err.Error(), "latest-gpu") || !strings.Contains(err.Error(), "the 3 tag(s) moved before it were put back") {
		t.Errorf("error does not say what failed and what was put back: %v", err)
	}
	// The results say what happened to each tag.
	want := map[string]registry.TagState{"dev-cpu": registry.TagRestored, "latest-cpu": registry.TagRestored, "dev-gpu": registry.TagDeleted, "latest-gpu": registry.TagNotWritten}
	for _, r := range res {
		if r.Tagged {
			t.Errorf("%s: tagged = true", r.Variant)
		}
		for _, tr := range r.TagResults {
			short := strings.TrimPrefix(tr.Tag, image+":")
			if tr.State != want[short] || tr.Previous != before[short] {
				t.Errorf("%s: %s, previous %q; want %s, previous %q", short, tr.State, tr.Previous, want[short], before[short])
			}
		}
	}
}

// A tag that cannot be put back is reported as such: the error and the
// results say it still points at the new image.
func TestTagRollbackFailureIsReported(t *testing.T) {
	fr := newFaultyRegistry(t)
	image := fr.host + "/runpod/worker"
	rc := &registry.Client{Timeout: 30 * time.Second}
	fr.failTag["runpod/worker:latest-gpu"] = true
	fr.failDelete["runpod/worker:dev-gpu"] = true
	res, err := Run(context.Background(), &fakeBuilder{}, requests(image, "cpu", "gpu"), Options{Tagger: rc})
	if err == nil || !strings.Contains(err.Error(), "1 tag(s) could NOT be put back") || !strings.Contains(err.Error(), image+":dev-gpu (points at "+res[1].Digest) {
		t.Fatalf("err = %v", err)
	}
	tr := res[1].TagResults[0]
	if tr.Tag != image+":dev-gpu" || tr.State != registry.TagNotRestored || tr.Error == "" {
		t.Errorf("dev-gpu result = %+v", tr)
	}
	if got := resolveOrEmpty(t, rc, image+":dev-gpu"); got != res[1].Digest {
		t.Errorf("dev-gpu -> %q; the results say it points at %s", got, res[1].Digest)
	}
}

// A new tag whose write failed is not "undone" when it never reached the
// registry: on a registry that cannot delete tags (Docker Hub: 405) it was
// reported "not restored, points at the new digest", and counted as tagged.
func TestFailedNewTagIsNotUndone(t *testing.T) {
	fr := newFaultyRegistry(t)
	image := fr.host + "/runpod/worker"
	rc := &registry.Client{Timeout: 30 * time.Second}
	fr.failTag["runpod/worker:latest-gpu"] = true
	fr.failDelete["runpod/worker:latest-gpu"] = true
	res, err := Run(context.Background(), &fakeBuilder{}, requests(image, "cpu", "gpu"), Options{Tagger: rc})
	if err == nil || strings.Contains(err.Error(), "could NOT be put back") || !strings.Contains(err.Error(), "the 3 tag(s) moved before it were put back") {
		t.Fatalf("err = %v", err)
	}
	for _, r := range res {
		if r.Tagged {
			t.Errorf("%s: tagged = true after a failed pass", r.Variant)
		}
		for _, tr := range r.TagResults {
			want := registry.TagDeleted
			if strings.HasSuffix(tr.Tag, ":latest-gpu") {
				want = registry.TagNotWritten
			}
			if tr.State != want || tr.Error != "" {
				t.Errorf("%+v, want state %s", tr, want)
			}
		}
	}
}

// A failed write whose outcome cannot be read back is reported as unknown,
// not as moved or as left alone, and not counted as tagged.
func TestFailedTagUnreadableIsUnknown(t *testing.T) {
	fr := newFaultyRegistry(t)
	image := fr.host + "/runpod/worker"
	rc := &registry.Client{Timeout: 30 * time.Second}
	fr.failTag["runpod/worker:latest-gpu"] = true
	fr.unreadableAfterFail = true
	res, err := Run(context.Background(), &fakeBuilder{}, requests(image, "cpu", "gpu"), Options{Tagger: rc})
	if err == nil || !strings.Contains(err.Error(), image+":latest-gpu") || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("err = %v", err)
	}
	tr := res[1].TagResults[1]
	if tr.Tag != image+":latest-gpu" || tr.State != registry.TagUnknown || tr.Error == "" || tr.Kept() || res[1].Tagged {
		t.Errorf("latest-gpu: %+v, tagged %v", tr, res[1].Tagged)
	}
}

// A registry's error page (a proxy's HTML, megabytes) is not copied whole
// into the error or the results: first line only, capped, marked.
func TestRegistryErrorTextIsCapped(t *testing.T) {
	fr := newFaultyRegistry(t)
	image := fr.host + "/runpod/worker"
	rc := &registry.Client{Timeout: 30 * time.Second}
	fr.failTag["runpod/worker:latest-cpu"] = true
	fr.unreadableAfterFail = true
	fr.failBody = "<html>" + strings.Repeat("x", 30<<10) + "\n<body>SECOND LINE</body>"
	res, err := Run(context.Background(), &fakeBuilder{}, requests(image, "cpu"), Options{Tagger: rc})
	if err == nil {
		t.Fatal("no error")
	}
	if len(err.Error()) > 4<<10 || strings.Contains(err.Error(), "SECOND LINE") || !strings.Contains(err.Error(), "bytes cut]") {
		t.Errorf("error is %d bytes: %.300q", len(err.Error()), err.Error())
	}
	tr := res[0].TagResults[1]
	if tr.State != registry.TagUnknown || len(tr.Error) > 600 || strings.Contains(tr.Error, "SECOND LINE") || !strings.Contains(tr.Error, "bytes cut]") {
		t.Errorf("%s: %s, error of %d bytes: %.300q", tr.Tag, tr.State, len(tr.Error), tr.Error)
	}
}

// A tag already pointing at the image is not written again.
func TestUnchangedTagIsNotRewritten(t *testing.T) {
	fr := newFaultyRegistry(t)
	image := fr.host + "/runpod/worker"
	rc := &registry.Client{Timeout: 30 * time.Second}
	fb := &fakeBuilder{fixed: true}
	if _, err := Run(context.Background(), fb, requests(image, "cpu"), Options{Tagger: rc}); err != nil {
		t.Fatal(err)
	}
	n := len(fr.written())
	res, err := Run(context.Background(), fb, requests(image, "cpu"), Options{Tagger: rc})
	if err != nil {
		t.Fatal(err)
	}
	if len(fr.written()) != n || !res[0].Tagged {
		t.Errorf("tag writes %v for an unchanged image; tagged %v", fr.written()[n:], res[0].Tagged)
	}
	for _, tr := range res[0].TagResults {
		if tr.State != registry.TagUnchanged || tr.Previous != res[0].Digest {
			t.Errorf("%+v", tr)
		}
	}
}

// Version tags are written before latest-*: a failure leaves latest-* alone.
func TestVersionTagsBeforeLatest(t *testing.T) {
	fr := newFaultyRegistry(t)
	image := fr.host + "/runpod/worker"
	if _, err := Run(context.Background(), &fakeBuilder{}, requests(image, "cpu", "gpu"), Options{Tagger: &registry.Client{Timeout: 30 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	puts := fr.written()
	seenLatest := false
	for _, p := range puts {
		isLatest := strings.Contains(p, ":latest")
		if seenLatest && !isLatest {
			t.Fatalf("tag writes %v: %s after a latest tag", puts, p)
		}
		seenLatest = seenLatest || isLatest
	}
	if len(puts) != 4 {
		t.Errorf("tag writes = %v, want 4", puts)
	}
}

// A repository that cannot be written is found before anything is built,
// and again before any tag is written (credentials may change meanwhile).
func TestUnwritableRepositoryWritesNoTag(t *testing.T) {
	for _, when := range []string{"before building", "after building"} {
		t.Run(when, func(t *testing.T) {
			fr := newFaultyRegistry(t)
			image := fr.host + "/runpod/worker"
			reqs := requests(image, "cpu")
			reqs[0].Variant.Tags = append(reqs[0].Variant.Tags, fr.host+"/mirror/worker:dev-cpu")
			opts := Options{Tagger: &registry.Client{Timeout: 30 * time.Second}}
			fb := &fakeBuilder{}
			if when == "before building" {
				fr.deny["mirror/worker"] = true
			} else {
				fb.finished = func() {
					fr.mu.Lock()
					fr.deny["mirror/worker"] = true
					fr.mu.Unlock()
				}
			}
			_, err := Run(context.Background(), fb, reqs, opts)
			if err == nil || !strings.Contains(err.Error(), "repository "+fr.host+"/mirror/worker is not writable") {
				t.Fatalf("err = %v, want one naming mirror/worker", err)
			}
			if puts := fr.written(); len(puts) != 0 {
				t.Errorf("tags written although %s/mirror/worker is not writable: %v", fr.host, puts)
			}
			if builds := fb.calls.Load(); (when == "before building") != (builds == 0) {
				t.Errorf("%d build(s) %s", builds, when)
			}
		})
	}
}

// Cancelled in the middle of the tagging pass (Ctrl-C), imagegen still puts
// back what it moved, including the write in flight.
func TestCancelDuringTaggingPutsBack(t *testing.T) {
	fr := newFaultyRegistry(t)
	image := fr.host + "/runpod/worker"
	rc := &registry.Client{Timeout: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fr.onPut = func(tag string) {
		if tag == "runpod/worker:dev-gpu" {
			cancel()
		}
	}
	res, err := Run(ctx, &fakeBuilder{}, requests(image, "cpu", "gpu"), Options{Tagger: rc})
	var me *MatrixError
	if !errors.As(err, &me) || !me.Tagging {
		t.Fatalf("err = %v", err)
	}
	for _, tag := range []string{"dev-cpu", "latest-cpu", "dev-gpu", "latest-gpu"} {
		if d := resolveOrEmpty(t, rc, image+":"+tag); d != "" {
			t.Errorf("%s -> %s after a cancelled tagging pass", tag, d)
		}
	}
	for _, r := range res {
		for _, tr := range r.TagResults {
			if tr.Kept() {
				t.Errorf("%+v", tr)
			}
		}
	}
}

type panickyBuilder struct{}

func (panickyBuilder) Build(context.Context, *Request) (*Result, error) { panic("nil map") }
func (panickyBuilder) Capabilities() Capabilities                       { return Capabilities{} }

// A panic in one build fails that variant (a goroutine's panic would kill
// the process with exit 2, like a usage error).
func TestBuilderPanicFailsItsVariant(t *testing.T) {
	_, err := Run(context.Background(), panickyBuilder{}, requests("example.invalid/x", "a"), Options{})
	var me *MatrixError
	if !errors.As(err, &me) || len(me.Failed) != 1 || !strings.Contains(err.Error(), "internal error (a bug in imagegen): panic: nil map") {
		t.Fatalf("err = %v", err)
	}
}
