// Package scaler runs RunPod runner scale sets: GitHub's scale-set API
// (github.com/actions/scaleset) says how many runners each scale set
// needs; the scaler mints each runner with a JIT config and starts it as a
// RunPod serverless job of the worker (input {"jitconfig": ...}: no GitHub
// credential reaches RunPod), keeps the runner ↔ RunPod job mapping in a
// state file, and makes sure both sides are gone once a runner is done.
//
// One process serves several scale sets. Each has a listener (the
// library's session, long poll and acknowledge loop), whose handler only
// records the target (min_runners + statistics.totalAssignedJobs, at most
// max_runners) and job events, and an actuator goroutine that does the
// calls. A second scaler on the same scale set is refused its session by
// GitHub (409) and stands by, retrying; SIGTERM (ctx) closes the sessions
// and leaves the runners and their jobs alone for the next scaler.
package scaler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"

	"github.com/runpod-workers/worker-github_runner/internal/dispatch"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Options are the knobs besides the configuration (tests shorten them).
type Options struct {
	// Owner names this scaler in GitHub's sessions (default: the host
	// name).
	Owner string
	// SessionRetry is the wait before asking again for a session another
	// scaler holds, or after the listener failed (default 30 s).
	SessionRetry time.Duration
	// FinishGrace is how long a worker gets to end its RunPod job after
	// its runner's job completed, before the job is cancelled (default 2
	// minutes).
	FinishGrace time.Duration
	// UnfitHold is how long a scale set starts no runner after it removed
	// one whose RunPod jobs kept failing on unfit workers (default 1
	// minute): RunPod replaces broken workers meanwhile.
	UnfitHold time.Duration
	// CrashBackoff is the first hold after a runner's RunPod job failed
	// before the runner got a job, for a reason other than an unfit
	// worker (a broken image, a crashing worker): each further such
	// failure in a row doubles it, up to MaxCrashBackoff (default 10 s).
	CrashBackoff time.Duration
	// GitHubOptions returns options for a scale-set client (retries,
	// TLS), after the scaler's own; it is called for each client, as a
	// client changes the retryable HTTP client an option gives it.
	GitHubOptions func() []scaleset.HTTPOption
	// RunPodHTTP is the RunPod client (default: 30 s timeout);
	// RunPodAttempts and RunPodBackoff its retries (defaults 4 and 1 s).
	RunPodHTTP     *http.Client
	RunPodAttempts int
	RunPodBackoff  time.Duration
	// Ready, when set, is called once every scale set exists and the
	// metrics address (if any) listens, with that address.
	Ready func(addr string)
}

// Scaler runs the scale sets of a configuration.
type Scaler struct {
	cfg  *Config
	sec  Secrets
	opts Options
	log  *slog.Logger
	m    *metrics
	sets []*set
}

// New checks the configuration and credentials; Run does the rest.
func New(cfg *Config, sec Secrets, log *slog.Logger, opts Options) (*Scaler, error) {
	if sec.RunPodKey.Empty() || sec.PAT.Empty() && sec.AppPrivateKey.Empty() {
		return nil, errors.New("no credentials: see SecretsFromEnv")
	}
	if opts.Owner == "" {
		opts.Owner, _ = os.Hostname()
		opts.Owner = cmp.Or(opts.Owner, "runpod-scaler")
	}
	opts.SessionRetry = cmp.Or(opts.SessionRetry, cfg.SessionRetry, 30*time.Second)
	opts.FinishGrace = cmp.Or(opts.FinishGrace, cfg.FinishGrace, 2*time.Minute)
	opts.UnfitHold = cmp.Or(opts.UnfitHold, time.Minute)
	opts.CrashBackoff = cmp.Or(opts.CrashBackoff, 10*time.Second)
	if opts.RunPodHTTP == nil {
		opts.RunPodHTTP = &http.Client{Timeout: 30 * time.Second}
	}
	opts.RunPodAttempts = cmp.Or(opts.RunPodAttempts, 4)
	opts.RunPodBackoff = cmp.Or(opts.RunPodBackoff, time.Second)
	return &Scaler{cfg: cfg, sec: sec, opts: opts, log: log, m: newMetrics()}, nil
}

// The scale-set clients' bounds. Each scale set has two clients: one for
// its runner calls (mint, look up, remove) and one for its listener (the
// session and its long polls, ~50 s), as a client makes one call at a
// time: one slow scale set, or a long poll, then holds up no other call.
const (
	gitHubCallTimeout   = 30 * time.Second
	gitHubPollTimeout   = 2 * time.Minute
	gitHubRetryWaitMax  = 10 * time.Second
	gitHubRetryAttempts = 4
)

func (s *Scaler) client(timeout time.Duration) (*scaleset.Client, error) {
	info := scaleset.SystemInfo{System: "worker-github_runner-scaler", Subsystem: "scaler"}
	opts := []scaleset.HTTPOption{scaleset.WithLogger(quiet(s.log)), scaleset.WithTimeout(timeout),
		scaleset.WithRetryWaitMax(gitHubRetryWaitMax), scaleset.WithRetryMax(gitHubRetryAttempts)}
	if s.opts.GitHubOptions != nil {
		opts = append(opts, s.opts.GitHubOptions()...)
	}
	if !s.sec.AppPrivateKey.Empty() {
		return scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
			GitHubConfigURL: s.cfg.GitHubURL, SystemInfo: info,
			GitHubAppAuth: scaleset.GitHubAppAuth{ClientID: s.sec.AppClientID, InstallationID: s.sec.AppInstallationID,
				PrivateKey: s.sec.AppPrivateKey.Reveal()},
		}, opts...)
	}
	return scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL: s.cfg.GitHubURL, PersonalAccessToken: s.sec.PAT.Reveal(), SystemInfo: info,
	}, opts...)
}

// Run creates or updates the scale sets, then serves them until ctx
// ends; it then closes the message sessions and returns nil. It fails at
// once when a scale set cannot be set up (credentials, runner group).
func (s *Scaler) Run(ctx context.Context) error {
	for _, w := range s.cfg.Warnings {
		s.log.Warn(w)
	}
	state, err := openState(s.cfg.StateFile)
	if err != nil {
		return err
	}
	defer state.close()
	rest := s.reconciler(ctx)
	var lis []*scaleset.Client // each scale set's listener client
	for _, sc := range s.cfg.ScaleSets {
		c, err := s.client(gitHubCallTimeout)
		if err != nil {
			return fmt.Errorf("GitHub client: %w", err)
		}
		lc, err := s.client(gitHubPollTimeout)
		if err != nil {
			return fmt.Errorf("GitHub client: %w", err)
		}
		id, err := ensureScaleSet(ctx, c, sc)
		if err != nil {
			return fmt.Errorf("scale set %s: %w", sc.Name, err)
		}
		rp := &dispatch.Client{APIURL: s.cfg.RunPodAPI, Endpoint: sc.Endpoint, APIKey: s.sec.RunPodKey, HTTP: s.opts.RunPodHTTP,
			Attempts: s.opts.RunPodAttempts, Backoff: s.opts.RunPodBackoff, UserAgent: "worker-github_runner-scaler"}
		st, err := newSet(sc, id, c, rp, state, s.log.With("scale_set", sc.Name), s.m, s.cfg.CheckInterval, s.opts)
		if err != nil {
			return fmt.Errorf("scale set %s: %w", sc.Name, err)
		}
		st.rest = rest
		s.sets = append(s.sets, st)
		lis = append(lis, lc)
		s.log.Info("scale set ready", "scale_set", sc.Name, "id", id, "endpoint", sc.Endpoint, "max_runners", sc.MaxRunners)
	}
	addr, stopHTTP, err := s.serveHTTP()
	if err != nil {
		return err
	}
	defer stopHTTP()
	if s.opts.Ready != nil {
		s.opts.Ready(addr)
	}
	var wg sync.WaitGroup
	for i, st := range s.sets {
		wg.Go(func() { st.actuate(ctx) })
		wg.Go(func() { s.listen(ctx, lis[i], st) })
	}
	wg.Wait()
	s.log.Info("stopped: sessions closed, runners and their RunPod jobs left running")
	return nil
}

// ensureScaleSet creates the scale set, or updates its labels, and
// returns its id.
func ensureScaleSet(ctx context.Context, c *scaleset.Client, sc ScaleSetConfig) (int, error) {
	groupID := 1 // GitHub's Default group
	if !strings.EqualFold(sc.RunnerGroup, scaleset.DefaultRunnerGroup) {
		// The library puts the name into the query unescaped: a name
		// holding &, #, + or % would be cut or changed.
		g, err := c.GetRunnerGroupByName(ctx, url.QueryEscape(sc.RunnerGroup))
		if err != nil {
			return 0, fmt.Errorf("runner group %q: %w", sc.RunnerGroup, err)
		}
		groupID = g.ID
	}
	labels := []scaleset.Label{{Name: sc.Name, Type: "System"}}
	for _, l := range sc.Labels {
		labels = append(labels, scaleset.Label{Name: l, Type: "System"})
	}
	want := &scaleset.RunnerScaleSet{Name: sc.Name, RunnerGroupID: groupID, Labels: labels,
		RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true}}
	got, err := c.GetRunnerScaleSet(ctx, groupID, sc.Name)
	if err != nil {
		return 0, fmt.Errorf("look the scale set up: %w", err)
	}
	if got == nil {
		if got, err = c.CreateRunnerScaleSet(ctx, want); err != nil {
			return 0, fmt.Errorf("create the scale set: %w", err)
		}
		return got.ID, nil
	}
	if _, err := c.UpdateRunnerScaleSet(ctx, got.ID, want); err != nil {
		return 0, fmt.Errorf("update the scale set: %w", err)
	}
	return got.ID, nil
}

// listen holds the scale set's message session and runs the listener
// until ctx ends, standing by while another scaler holds the session.
func (s *Scaler) listen(ctx context.Context, c *scaleset.Client, st *set) {
	for {
		err := s.listenOnce(ctx, c, st)
		if ctx.Err() != nil {
			st.setStatus("stopped")
			return
		}
		if sessionConflict(err) {
			s.m.add("runpod_scaler_session_conflicts_total", 1, "scale_set", st.cfg.Name)
			st.setStatus("standby: another scaler holds the message session")
			st.log.Error(fmt.Sprintf("session already exists: another scaler holds this scale set's message session "+
				"(GitHub answered 409); standing by, asking again in %v", s.opts.SessionRetry), errAttr(err))
		} else {
			st.setStatus("error: " + secret.CapLine(err.Error(), 500))
			st.log.Error(fmt.Sprintf("the listener stopped; starting again in %v", s.opts.SessionRetry), errAttr(err))
		}
		select {
		case <-ctx.Done():
			st.setStatus("stopped")
			return
		case <-time.After(s.opts.SessionRetry):
		}
	}
}

func (s *Scaler) listenOnce(ctx context.Context, c *scaleset.Client, st *set) error {
	sess, err := c.MessageSessionClient(ctx, st.id, s.opts.Owner)
	if err != nil {
		return fmt.Errorf("open the message session: %w", err)
	}
	s.m.set("runpod_scaler_session", 1, "scale_set", st.cfg.Name)
	st.setStatus("listening")
	st.log.Info("message session open", "owner", s.opts.Owner)
	defer func() {
		s.m.set("runpod_scaler_session", 0, "scale_set", st.cfg.Name)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := sess.Close(cctx); err != nil {
			st.log.Error("cannot close the message session (GitHub drops it after a while)", errAttr(err))
			return
		}
		st.log.Info("message session closed")
	}()
	l, err := listener.New(sess, listener.Config{ScaleSetID: st.id, MaxRunners: st.capacityNow(), Logger: quiet(st.log)},
		listener.WithMetricsRecorder(st))
	if err != nil {
		return err
	}
	st.setListener(l)
	defer st.setListener(nil)
	return l.Run(ctx, st)
}

// sessionConflict reports GitHub's 409 for a second session.
func sessionConflict(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "TaskAgentSessionConflictException") || strings.Contains(err.Error(), "409 Conflict"))
}

// serveHTTP serves /metrics and /healthz on cfg.Listen.
func (s *Scaler) serveHTTP() (string, func(), error) {
	if s.cfg.Listen == "" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("listen for /metrics on %s: %w", s.cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.m)
	mux.HandleFunc("GET /healthz", s.healthz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// healthz answers each scale set's state, one a line: 200 when every
// scale set holds its message session, 503 when one does not (standing
// by, or its listener failed).
func (s *Scaler) healthz(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	code := http.StatusOK
	for _, st := range s.sets {
		st.mu.Lock()
		fmt.Fprintf(&b, "%s: %s (runners: %d, target: %d)\n", st.cfg.Name, st.status, len(st.runners), st.target)
		if st.status != "listening" {
			code = http.StatusServiceUnavailable
		}
		st.mu.Unlock()
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, b.String())
}

// quiet is the logger for the library: its info lines (one per poll) are
// dropped.
func quiet(l *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{l.Handler(), slog.LevelWarn})
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(n), f.min}
}

// maxErrorLog bounds an error in a log line: a library's error may carry
// a whole response body (a proxy's page).
const maxErrorLog = 2000

// errAttr is an error as a log attribute, capped.
func errAttr(err error) slog.Attr {
	return slog.String("error", secret.CapLine(err.Error(), maxErrorLog))
}
