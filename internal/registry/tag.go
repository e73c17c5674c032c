package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Target is an image pushed by digest and the tags (full references) to
// point at it.
type Target struct {
	Image  string
	Digest string
	Tags   []string
}

// TagState says what a tagging pass did to one tag.
type TagState string

// The states of a tag after TagAll.
const (
	// TagMoved: the tag points at the new digest (created, or moved from
	// Previous).
	TagMoved TagState = "moved"
	// TagUnchanged: the tag already pointed at the digest.
	TagUnchanged TagState = "unchanged"
	// TagNotWritten: the pass stopped before this tag; it is as it was.
	TagNotWritten TagState = "not written"
	// TagRestored: moved, then put back to Previous after a failure.
	TagRestored TagState = "restored"
	// TagDeleted: created, then deleted again after a failure (it did not
	// exist before).
	TagDeleted TagState = "deleted"
	// TagNotRestored: moved, and putting it back failed: it still points
	// at the new digest (Error says why).
	TagNotRestored TagState = "not restored"
	// TagUnknown: a write failed and the tag could not be read back, so
	// whether it moved is unknown (Error says why).
	TagUnknown TagState = "unknown"
)

// TagResult is what became of one tag.
type TagResult struct {
	Tag   string   `json:"tag"`
	State TagState `json:"state"`
	// Previous is the digest the tag pointed at before, "" when it did not
	// exist.
	Previous string `json:"previous,omitempty"`
	// Error says why a moved tag could not be put back, or why its state
	// is unknown (first line, capped: see ErrorText).
	Error string `json:"error,omitempty"`
}

// Kept says whether the tag is known to point at the new digest after the
// pass (an unknown state is not counted).
func (r TagResult) Kept() bool {
	return r.State == TagMoved || r.State == TagUnchanged || r.State == TagNotRestored
}

// tagOp is one tag to write.
type tagOp struct {
	tag  name.Tag
	src  *remote.Descriptor // what the tag must point at
	repo name.Repository    // where src lives
	prev *remote.Descriptor // what it pointed at; nil when it did not exist
	res  *TagResult
}

// TagAll points every target's tags at its digest, all or nothing:
//  1. every tag is parsed, no tag is claimed by two digests, every target
//     repository is reachable and writable, and each tag's current digest
//     is read; any failure here writes nothing;
//  2. version tags are written before floating ones (latest, latest-*), so
//     an interrupted pass never moves latest-* alone, and within each group
//     tags that exist before new ones;
//  3. when a write fails, every tag already moved is put back to its
//     previous digest, or deleted if it did not exist; the tag whose write
//     failed is read back and put back only if the write reached the
//     registry anyway (unknown when it cannot be read). Once ctx is
//     cancelled, putting back gets RollbackGrace at most.
//
// The results (one slice per target, one entry per tag) say exactly what
// moved, also on error.
func (c *Client) TagAll(ctx context.Context, targets []Target) ([][]TagResult, error) {
	results := make([][]TagResult, len(targets))
	for i, t := range targets {
		for _, tag := range t.Tags {
			results[i] = append(results[i], TagResult{Tag: tag, State: TagNotWritten})
		}
	}
	planCtx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	ops, err := c.plan(planCtx, targets, results)
	if err != nil {
		return results, fmt.Errorf("%w (no tag was written)", err)
	}
	for i, op := range ops {
		if err := c.writeTag(ctx, op); err != nil {
			return results, c.rollback(ctx, ops[:i], op, fmt.Errorf("tag %s: %w", op.tag, capped(err)))
		}
		op.res.State = TagMoved
	}
	return results, nil
}

// plan checks everything that can be checked before writing and returns
// the writes in order: version tags first, floating tags last.
func (c *Client) plan(ctx context.Context, targets []Target, results [][]TagResult) ([]*tagOp, error) {
	var ops []*tagOp
	claimed := map[string]string{}
	var refs []string
	for i, t := range targets {
		for j, raw := range t.Tags {
			tag, err := name.NewTag(raw)
			if err != nil {
				return nil, fmt.Errorf("tag %q: %w", raw, capped(err))
			}
			if other, ok := claimed[tag.String()]; ok && other != t.Digest {
				return nil, fmt.Errorf("tag %s is claimed by two images (%s and %s)", tag, other, t.Digest)
			}
			claimed[tag.String()] = t.Digest
			refs = append(refs, tag.String())
			ops = append(ops, &tagOp{tag: tag, res: &results[i][j]})
		}
	}
	if err := c.CheckWritable(ctx, refs); err != nil {
		return nil, err
	}
	if err := c.readSources(ctx, targets, ops); err != nil {
		return nil, err
	}
	var todo []*tagOp
	for _, op := range ops {
		prev, err := c.current(ctx, op.tag)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", op.tag, capped(err))
		}
		op.prev = prev
		if prev != nil {
			op.res.Previous = prev.Digest.String()
			if prev.Digest == op.src.Digest {
				op.res.State = TagUnchanged
				continue
			}
		}
		todo = append(todo, op)
	}
	// Version tags first; within each group, tags that exist before new
	// ones: moving a tag back always works, deleting a new one is not
	// supported by every registry, so a failure should come
	// before new tags exist where the order allows.
	slices.SortStableFunc(todo, func(a, b *tagOp) int {
		if c := boolCmp(Floating(a.tag.TagStr()), Floating(b.tag.TagStr())); c != 0 {
			return c
		}
		return boolCmp(a.prev == nil, b.prev == nil)
	})
	return todo, nil
}

// readSources fetches each target's manifest, which its tags will carry.
func (c *Client) readSources(ctx context.Context, targets []Target, ops []*tagOp) error {
	k := 0
	for _, t := range targets {
		repo, err := name.NewRepository(t.Image)
		if err != nil {
			return fmt.Errorf("image %q: %w", t.Image, capped(err))
		}
		src, err := remote.Get(repo.Digest(t.Digest), c.options(ctx)...)
		if err != nil {
			return fmt.Errorf("read %s@%s: %w", repo, t.Digest, capped(err))
		}
		for range t.Tags {
			ops[k].src, ops[k].repo = src, repo
			k++
		}
	}
	return nil
}

// current is what a tag points at now; nil when it does not exist.
func (c *Client) current(ctx context.Context, tag name.Tag) (*remote.Descriptor, error) {
	d, err := remote.Get(tag, c.options(ctx)...)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	return d, err
}

// Floating says whether a tag name moves with every release (latest,
// latest-gpu), as opposed to a version tag (v1.0.0-gpu, dev-gpu).
func Floating(tag string) bool { return tag == "latest" || strings.HasPrefix(tag, "latest-") }

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}

// writeTag points one tag at its source: a manifest in the same
// repository, a copy of the image (blobs mounted where allowed) elsewhere.
func (c *Client) writeTag(ctx context.Context, op *tagOp) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if op.tag.Context().String() == op.repo.String() {
		return remote.Tag(op.tag, op.src, c.options(ctx)...)
	}
	if op.src.MediaType.IsIndex() {
		idx, err := op.src.ImageIndex()
		if err != nil {
			return err
		}
		return remote.WriteIndex(op.tag, idx, c.options(ctx)...)
	}
	img, err := op.src.Image()
	if err != nil {
		return err
	}
	return remote.Write(op.tag, img, c.options(ctx)...)
}

// RollbackGrace bounds putting tags back once the run's context is
// cancelled (Ctrl-C, SIGTERM): CI runners send SIGKILL about 7.5 s after
// SIGINT.
const RollbackGrace = 5 * time.Second

// rollbackContext outlives ctx: it ends after the client's timeout, or
// RollbackGrace after ctx is cancelled, whichever comes first.
func (c *Client) rollbackContext(ctx context.Context) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout())
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(RollbackGrace, cancel) })
	return rctx, func() { stop(); cancel() }
}

// rollback settles the tag whose write failed, then puts back the tags of
// done, newest first. It returns cause extended with what could not be put
// back, or whose state is unknown.
func (c *Client) rollback(ctx context.Context, done []*tagOp, failed *tagOp, cause error) error {
	ctx, cancel := c.rollbackContext(ctx)
	defer cancel()
	var stuck, unknown []string
	if err := c.settleFailed(ctx, failed); err != nil {
		if failed.res.State == TagUnknown {
			unknown = append(unknown, fmt.Sprintf("%s (may point at %s, was %s): %v", failed.tag, failed.src.Digest, orNone(failed.res.Previous), err))
		} else {
			stuck = append(stuck, stuckLine(failed, err))
		}
	}
	for i := len(done) - 1; i >= 0; i-- {
		op := done[i]
		if err := c.undo(ctx, op); err != nil {
			op.res.State, op.res.Error = TagNotRestored, ErrorText(err)
			stuck = append(stuck, stuckLine(op, err))
		}
	}
	return rollbackError(cause, len(done), stuck, unknown, ctx.Err() != nil)
}

// rollbackError is cause with what the rollback could not do.
func rollbackError(cause error, moved int, stuck, unknown []string, outOfTime bool) error {
	var msg strings.Builder
	if len(stuck) > 0 {
		fmt.Fprintf(&msg, "\n%d tag(s) could NOT be put back:\n  %s", len(stuck), strings.Join(stuck, "\n  "))
		if outOfTime {
			fmt.Fprintf(&msg, "\n(putting back ran out of time: once interrupted it gets %s)", RollbackGrace)
		}
	}
	if len(unknown) > 0 {
		fmt.Fprintf(&msg, "\n%d tag(s) in an unknown state (the write failed and the tag could not be read back):\n  %s", len(unknown), strings.Join(unknown, "\n  "))
	}
	switch {
	case msg.Len() > 0:
		return fmt.Errorf("%w%s", cause, msg.String())
	case moved > 0:
		return fmt.Errorf("%w; the %d tag(s) moved before it were put back", cause, moved)
	}
	return fmt.Errorf("%w; no tag was moved", cause)
}

func stuckLine(op *tagOp, err error) string {
	return fmt.Sprintf("%s (points at %s, was %s): %v", op.tag, op.src.Digest, orNone(op.res.Previous), capped(err))
}

// settleFailed finds out whether a failed write reached the registry anyway
// (a lost answer, a cancel after the registry wrote it) and undoes it only
// then: deleting a tag that was never written would fail on registries
// that cannot delete (Docker Hub) and report a move that did not happen.
func (c *Client) settleFailed(ctx context.Context, op *tagOp) error {
	now, err := c.current(ctx, op.tag)
	switch {
	case err != nil:
		op.res.State, op.res.Error = TagUnknown, ErrorText(fmt.Errorf("read it back: %w", err))
		return capped(err)
	case now == nil || now.Digest != op.src.Digest:
		op.res.State = TagNotWritten
		return nil
	}
	if err := c.undo(ctx, op); err != nil {
		op.res.State, op.res.Error = TagNotRestored, ErrorText(err)
		return err
	}
	return nil
}

// undo points a tag back at its previous manifest, or deletes it when it
// did not exist (a tag already gone is fine).
func (c *Client) undo(ctx context.Context, op *tagOp) error {
	if op.prev != nil {
		op.res.State = TagRestored
		return remote.Tag(op.tag, op.prev, c.options(ctx)...)
	}
	op.res.State = TagDeleted
	err := remote.Delete(op.tag, c.options(ctx)...)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return nil
	}
	return err
}

func orNone(d string) string {
	if d == "" {
		return "nothing"
	}
	return d
}

// CheckWritable fails unless the repository of every reference is
// reachable and accepts a push with the Docker config's credentials: it
// starts a blob upload in each (and cancels it), as a push would.
func (c *Client) CheckWritable(ctx context.Context, refs []string) error {
	seen := map[string]bool{}
	var errs []error
	for _, ref := range refs {
		r, err := name.ParseReference(ref)
		if err != nil {
			return fmt.Errorf("%q: %w", ref, capped(err))
		}
		repo := r.Context()
		if seen[repo.String()] {
			continue
		}
		seen[repo.String()] = true
		if err := c.checkPush(ctx, repo); err != nil {
			errs = append(errs, fmt.Errorf("repository %s is not writable (or not reachable): %w", repo, capped(err)))
		}
	}
	return errors.Join(errs...)
}

func (c *Client) checkPush(ctx context.Context, repo name.Repository) error {
	ctx, cancel := context.WithTimeout(ctx, min(c.timeout(), checkTimeout))
	defer cancel()
	auth, err := authn.Resolve(ctx, c.keychain(), repo)
	if err != nil {
		return err
	}
	base := c.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return err
	}
	client := &http.Client{Transport: rt}
	u := &url.URL{Scheme: repo.Registry.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/uploads/"}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusAccepted); err != nil {
		return err
	}
	if loc, err := resp.Location(); err == nil {
		if del, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc.String(), nil); err == nil {
			if r, err := client.Do(del); err == nil {
				r.Body.Close()
			}
		}
	}
	return nil
}

// checkTimeout bounds one repository's write check.
const checkTimeout = 30 * time.Second
