// Package pin resolves image references to the digests their tags point
// at in their registries (go-containerregistry's HEAD: for a multi-arch tag
// the index's digest), for `imagegen pin`, and compares them with the pins
// of a variants file.
package pin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/retry"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// DefaultTimeout bounds the lookup of one reference, retries included.
const DefaultTimeout = time.Minute

// DefaultPolicy retries a lookup that failed on the network, a 429 or a
// 5xx, four attempts in all.
var DefaultPolicy = retry.Policy{Attempts: 4, Base: time.Second, Max: 8 * time.Second, Jitter: true, FailPastDeadline: true}

// parallel bounds the lookups in flight.
const parallel = 4

// Resolver looks references up in their registries.
type Resolver struct {
	// Mirrors: references of a registry are looked up at another.
	Mirrors Mirrors
	// Keychain gives credentials; nil means authn.DefaultKeychain (the
	// Docker config), which is anonymous for registries it has none for.
	Keychain authn.Keychain
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	// Timeout bounds one reference's lookup; 0 means DefaultTimeout.
	Timeout time.Duration
	// Policy is how a lookup is retried; nil means DefaultPolicy. Its
	// Classify is replaced by the resolver's.
	Policy *retry.Policy
}

// Result is one reference's digest, or why it has none.
type Result struct {
	Ref    string
	Digest string
	Err    error
}

// ResolveAll looks every reference up, a few at a time; the results are
// in the order of refs.
func (r *Resolver) ResolveAll(ctx context.Context, refs []string) []Result {
	out := make([]Result, len(refs))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			d, err := r.Digest(ctx, ref)
			out[i] = Result{Ref: ref, Digest: d, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// Digest is the digest ref's tag points at now (sha256:...), looked up at
// its mirror if it has one. Errors name the reference and the registry
// asked, never credentials, and are at most a line.
func (r *Resolver) Digest(ctx context.Context, ref string) (string, error) {
	at, err := r.Mirrors.lookupRef(ref)
	if err != nil {
		return "", fmt.Errorf("%s: %v", ref, err)
	}
	auth, err := r.keychain().Resolve(at.Context())
	if err != nil {
		return "", fmt.Errorf("%s: reading Docker credentials for %s: %s", ref, at.Context().RegistryStr(), registry.ErrorText(err))
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no answer within %s", timeout))
	defer cancel()
	p := DefaultPolicy
	if r.Policy != nil {
		p = *r.Policy
	}
	p.Classify = classify
	perAttempt := attemptTimeout(timeout, p)
	var digest string
	hung := 0 // attempts that ran out of their share
	err = retry.Do(ctx, p, func(int) error {
		actx, cancel := context.WithTimeoutCause(ctx, perAttempt, errAttemptTimeout)
		defer cancel()
		d, err := r.lookup(actx, at, auth)
		if err != nil && context.Cause(actx) == errAttemptTimeout {
			hung++
			return fmt.Errorf("%w: %w", errAttemptTimeout, err)
		}
		digest = d
		return err
	})
	if err != nil && hung > 0 && (errors.Is(err, errAttemptTimeout) || ctx.Err() != nil) {
		return "", fmt.Errorf("%s: registry %s not reachable (no answer within %s: %s of up to %s each)", ref, where(ref, at), timeout, plural(attempts(err), "attempt"), perAttempt)
	}
	if err != nil {
		return "", describe(ref, at, err, timeout)
	}
	return digest, nil
}

// errAttemptTimeout marks an attempt that ran out of its share of the
// timeout: retried, unlike the end of the whole lookup's time.
var errAttemptTimeout = errors.New("no answer")

// attemptTimeout is one attempt's share of the timeout: an equal share
// of it, so that one hung connection leaves time for the other attempts.
func attemptTimeout(timeout time.Duration, p retry.Policy) time.Duration {
	if p.Attempts <= 1 {
		return timeout
	}
	return timeout / time.Duration(p.Attempts)
}

// lookup is one attempt: HEAD, and GET when the HEAD answer carries no
// usable digest (a registry without Docker-Content-Digest), as crane does.
func (r *Resolver) lookup(ctx context.Context, at name.Reference, auth authn.Authenticator) (string, error) {
	desc, err := remote.Head(at, r.options(ctx, auth)...)
	if err == nil {
		return desc.Digest.String(), nil
	}
	var te *transport.Error
	var ne net.Error
	if errors.As(err, &te) || errors.As(err, &ne) || ctx.Err() != nil {
		return "", err
	}
	got, err := remote.Get(at, r.options(ctx, auth)...)
	if err != nil {
		return "", err
	}
	return got.Digest.String(), nil
}

func (r *Resolver) keychain() authn.Keychain {
	if r.Keychain == nil {
		return authn.DefaultKeychain
	}
	return r.Keychain
}

// options turn go-containerregistry's own retries off: retry.Do is the
// one retry loop.
func (r *Resolver) options(ctx context.Context, auth authn.Authenticator) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth),
		remote.WithRetryStatusCodes(), remote.WithRetryPredicate(func(error) bool { return false })}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	return opts
}

// classify retries network failures, 408, 429 and 5xx answers.
func classify(err error, _ int) retry.Verdict {
	var te *transport.Error
	if errors.As(err, &te) {
		c := te.StatusCode
		return retry.Verdict{Retry: c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500}
	}
	if errors.Is(err, errAttemptTimeout) {
		return retry.Verdict{Retry: true}
	}
	return retry.Verdict{Retry: !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)}
}

// where is the registry ref was looked up at, and as what when mirrored.
func where(ref string, at name.Reference) string {
	if at.String() != ref {
		return fmt.Sprintf("%s (as %s)", at.Context().RegistryStr(), at)
	}
	return at.Context().RegistryStr()
}

// attempts is how many attempts ended in err.
func attempts(err error) int {
	var re *retry.Error
	if errors.As(err, &re) {
		return re.Attempts
	}
	return 1
}

// describe says in one line why ref could not be looked up at at.
func describe(ref string, at name.Reference, err error, timeout time.Duration) error {
	host := at.Context().RegistryStr()
	where := where(ref, at)
	attempts := ""
	var re *retry.Error
	if errors.As(err, &re) {
		switch re.Reason {
		case retry.Cancelled:
			attempts = fmt.Sprintf(" (%v, after %s)", re.Cause, plural(re.Attempts, "attempt"))
		case retry.NoTime:
			attempts = fmt.Sprintf(" (%s, no time left for another)", plural(re.Attempts, "attempt"))
		default:
			attempts = fmt.Sprintf(" (%s)", plural(re.Attempts, "attempt"))
		}
		err = re.Err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch c := te.StatusCode; {
		case c == http.StatusUnauthorized || c == http.StatusForbidden:
			return fmt.Errorf("%s: registry %s refused access (HTTP %d): log in to it (docker login %s) or check the name", ref, where, c, host)
		case c == http.StatusNotFound:
			return fmt.Errorf("%s: registry %s has no such tag (HTTP 404)", ref, where)
		default:
			return fmt.Errorf("%s: registry %s answered HTTP %d%s", ref, where, c, attempts)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) && attempts == "" {
		attempts = fmt.Sprintf(" (no answer within %s)", timeout)
	}
	return fmt.Errorf("%s: registry %s not reachable%s: %s", ref, where, attempts, registry.ErrorText(err))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Mirrors maps a registry (docker.io, gcr.io) to a registry, with an
// optional path, its references are looked up at instead:
// docker.io=127.0.0.1:5000 looks ubuntu:24.04 up as
// 127.0.0.1:5000/library/ubuntu:24.04. A mirror on loopback is spoken to in
// plain HTTP, as buildkitd does for the project's local registry.
type Mirrors map[string]string

// Set adds a mirror given as REGISTRY=MIRROR. Its errors never quote
// the value (it may hold credentials by mistake); user-info is refused:
// credentials belong in the Docker config.
func (m Mirrors) Set(s string) error {
	from, to, ok := strings.Cut(s, "=")
	if !ok || from == "" || to == "" {
		return errors.New("must look like REGISTRY=HOST[:PORT][/PATH], e.g. docker.io=127.0.0.1:5000")
	}
	if strings.Contains(s, "@") {
		return errors.New("holds user-info (user:password@): credentials belong in the Docker config (docker login), never in --mirror")
	}
	from = strings.TrimSuffix(strings.ToLower(from), "/")
	if !validHost(from) {
		return errors.New("the part before = is not a registry host (docker.io, gcr.io, HOST:PORT)")
	}
	to = strings.TrimRight(to, "/")
	host, path, _ := strings.Cut(to, "/")
	host = strings.ToLower(host)
	if !validHost(host) {
		return errors.New("the part after = does not start with a registry host (HOST[:PORT])")
	}
	if path != "" {
		if _, err := name.NewRepository(host+"/"+path+"/x", name.StrictValidation); err != nil {
			return errors.New("the path after the mirror's host is not a repository path (lower case, digits, . _ - and /)")
		}
		host += "/" + path
	}
	reg, err := name.NewRegistry(from, name.StrictValidation)
	if err != nil {
		return errors.New("the part before = is not a registry host (docker.io, gcr.io, HOST:PORT)")
	}
	if _, dup := m[reg.RegistryStr()]; dup {
		return fmt.Errorf("%s has a mirror already", reg.RegistryStr())
	}
	m[reg.RegistryStr()] = host
	return nil
}

var hostRE = regexp.MustCompile(`^(localhost|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:]+\])(:[0-9]{1,5})?$`)

func validHost(s string) bool { return len(s) <= 255 && hostRE.MatchString(s) }

// lookupRef is the reference ref is looked up as: its host in lower case
// (registry hosts are case-insensitive), at its mirror if it has one.
func (m Mirrors) lookupRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(variants.LowerHost(ref))
	if err != nil {
		return nil, err
	}
	to, ok := m[r.Context().RegistryStr()]
	if !ok {
		return r, nil
	}
	s := to + "/" + r.Context().RepositoryStr() + sep(r) + r.Identifier()
	var opts []name.Option
	if registry.IsLoopback(to) {
		opts = append(opts, name.Insecure)
	}
	return name.ParseReference(s, opts...)
}

func sep(r name.Reference) string {
	if _, ok := r.(name.Digest); ok {
		return "@"
	}
	return ":"
}

// State is what became of one reference's pin.
type State string

// States.
const (
	Current State = "current" // pinned to what the registry has
	Stale   State = "stale"   // pinned to another digest
	Missing State = "missing" // not pinned
	Unused  State = "unused"  // pinned, but no build of this matrix pulls it
)

// Entry compares one reference's pin with its registry.
type Entry struct {
	// Ref is the key: as the file spells it when pinned, else as the
	// matrix resolves it.
	Ref      string
	Pinned   string // "" when missing
	Registry string // "" when unused
	State    State
}

// Compare holds the digests the registries have now (refs[i] has
// digests[i]) against the file's pins; entries sorted by reference. A pin
// of none of refs is Unused.
func Compare(refs, digests []string, pins variants.Pins) []Entry {
	var out []Entry
	used := map[string]bool{}
	for i, ref := range refs {
		e := Entry{Ref: ref, Registry: digests[i], State: Missing}
		if p, ok := pins.Lookup(ref); ok {
			used[p.Ref] = true
			e.Ref, e.Pinned, e.State = p.Ref, p.Digest, Stale
			if p.Digest == digests[i] {
				e.State = Current
			}
		}
		out = append(out, e)
	}
	for _, p := range pins.Sorted() {
		if !used[p.Ref] {
			out = append(out, Entry{Ref: p.Ref, Pinned: p.Digest, State: Unused})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Ref, b.Ref) })
	return out
}

// Table is the pins to write: every reference pulled at the registry's
// digest, and the unused pins as they are unless prune.
func Table(entries []Entry, prune bool) map[string]string {
	out := map[string]string{}
	for _, e := range entries {
		switch {
		case e.State != Unused:
			out[e.Ref] = e.Registry
		case !prune:
			out[e.Ref] = e.Pinned
		}
	}
	return out
}

// Short is a digest cut for a message: sha256: and 12 hex digits.
func Short(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12] + "…"
	}
	return d
}

// Change describes an entry for `imagegen pin`, "" when it did not change;
// an unused one is described as removed (by --prune).
func (e Entry) Change() string {
	switch e.State {
	case Stale:
		return fmt.Sprintf("%s: %s → %s", e.Ref, Short(e.Pinned), Short(e.Registry))
	case Missing:
		return fmt.Sprintf("%s: pinned to %s", e.Ref, Short(e.Registry))
	case Unused:
		return fmt.Sprintf("%s: pin %s removed (no build of this matrix pulls it)", e.Ref, Short(e.Pinned))
	}
	return ""
}

// Problem describes an entry for `imagegen pin --check`, "" when current
// or unused.
func (e Entry) Problem() string {
	switch e.State {
	case Stale:
		return fmt.Sprintf("%s: pinned %s, registry now has %s", e.Ref, Short(e.Pinned), Short(e.Registry))
	case Missing:
		return fmt.Sprintf("%s: not pinned (registry has %s)", e.Ref, Short(e.Registry))
	}
	return ""
}

// Note describes an unused pin, kept, "" for any other entry: an unused
// pin changes no build, so it is neither a change nor a problem.
func (e Entry) Note() string {
	if e.State != Unused {
		return ""
	}
	return fmt.Sprintf("pin %s: no build of this matrix pulls it; kept (imagegen pin --prune removes it)", e.Ref)
}
