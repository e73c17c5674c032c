package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// Launcher starts runners minted on the GitHub side: it registers each
// runner with GitHub's generate-jitconfig, with the credential of the
// workflow that runs it, and sends RunPod only the runner's JIT config,
// so the endpoint holds no GitHub credential. Start returns once GitHub
// lists every runner online, or cleans both sides up and fails.
type Launcher struct {
	RunPod *Client
	GitHub *github.Client
	// Progress receives one line per change while Start waits (nil:
	// nothing).
	Progress io.Writer
	// PollMin and PollMax bound the wait between two looks at GitHub and
	// RunPod (defaults 2 s and 15 s); the wait doubles from one to the
	// other.
	PollMin, PollMax time.Duration
	// CleanupTimeout bounds removing what a failed start left (default
	// 2 min; a busy runner's removal is retried until then).
	CleanupTimeout time.Duration
	// CancelCleanupTimeout bounds it instead when Start's context was
	// cancelled (default 8 s): a cancelled workflow's runner signals the
	// step, then kills it 10 s later.
	CancelCleanupTimeout time.Duration
	// Submitted, when set, hears of the runners as soon as they exist:
	// once registered (no JobID yet), and again once their RunPod jobs
	// are submitted, before Start waits for them (the action writes them
	// out, so that the stop job can finish a cleanup cut short). An error
	// fails Start, which cleans up.
	Submitted func([]Runner) error
	// Redactor receives the JIT configs Start mints; Start's progress
	// lines and errors are redacted with it (nil: a redactor of Start's
	// own), in case an answer echoes a job's input.
	Redactor *secret.Redactor
}

// Runner is one runner a Launcher started: GitHub's side and RunPod's.
type Runner struct {
	Name     string
	Label    string // its only label
	RunnerID int64  // GitHub's id
	JobID    string // RunPod's job id
}

// JITOptions describe the runners to start.
type JITOptions struct {
	// Labels: one runner per label, which is that runner's only label.
	Labels      []string
	RunnerGroup string // organisations and enterprises; "" is Default
	RunnerUser  string // "runner" (default) or "root"
	IdleTimeout time.Duration
	JobTimeout  time.Duration
	// ExecutionTimeout as StartOptions'. TTL as StartOptions', but by
	// default the execution timeout + the startup timeout + 5 minutes: a
	// job still queued once Start gave up is of no use (its runner is
	// deleted).
	ExecutionTimeout, TTL time.Duration
	// StartupTimeout bounds the wait for the runners to come online
	// (default DefaultStartupTimeout).
	StartupTimeout time.Duration
	// GPU is what each runner's host must have.
	GPU GPUNeeds
	// UnfitRetries is how many times a runner's RunPod job that failed on
	// an unfit worker (jobapi.ParseErrorReport: a broken host, or one
	// short of GPU's needs) is submitted again, within StartupTimeout
	// (0: never; at most MaxUnfitRetries). Such a worker never started
	// the runner, so its JIT config is still unused.
	UnfitRetries int
}

// MaxUnfitRetries bounds JITOptions.UnfitRetries.
const MaxUnfitRetries = 10

// DefaultStartupTimeout is how long Start waits for runners by default.
const DefaultStartupTimeout = 10 * time.Minute

// MaxRunners bounds the runners one Start mints.
const MaxRunners = 64

// A label that is also a runner name: GitHub's names are up to 64
// characters.
var labelNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckLabel checks a runner's unique label, which is also its name.
func CheckLabel(l string) error {
	if !labelNameRE.MatchString(l) {
		return fmt.Errorf("label %s: up to 64 letters, digits, '.', '_' and '-' (it is also the runner's name)", secret.Preview(l))
	}
	return nil
}

func (o *JITOptions) check() (exec, ttl time.Duration, err error) {
	switch n := len(o.Labels); {
	case n == 0:
		return 0, 0, errors.New("no runner to start")
	case n > MaxRunners:
		return 0, 0, fmt.Errorf("%d runners at once: at most %d", n, MaxRunners)
	}
	if o.UnfitRetries < 0 || o.UnfitRetries > MaxUnfitRetries {
		return 0, 0, fmt.Errorf("unfit retries %d: 0 to %d", o.UnfitRetries, MaxUnfitRetries)
	}
	if err := o.GPU.check(); err != nil {
		return 0, 0, err
	}
	seen := map[string]bool{}
	for _, l := range o.Labels {
		if err := CheckLabel(l); err != nil {
			return 0, 0, err
		}
		if seen[strings.ToLower(l)] {
			return 0, 0, fmt.Errorf("label %s twice: each runner needs a label of its own", l)
		}
		seen[strings.ToLower(l)] = true
	}
	if o.StartupTimeout <= 0 {
		o.StartupTimeout = DefaultStartupTimeout
	}
	if len(o.Labels) > 1 && o.IdleTimeout > 0 {
		// A runner online early waits while the others start: its idle
		// clock must outlast the startup, so that its matrix leg still
		// finds it (Start checks them all again before it returns).
		o.IdleTimeout += o.StartupTimeout
	}
	so := StartOptions{IdleTimeout: o.IdleTimeout, JobTimeout: o.JobTimeout, ExecutionTimeout: o.ExecutionTimeout, TTL: o.TTL}
	if exec, ttl, err = so.policy(); err != nil || o.TTL != 0 {
		return exec, ttl, err
	}
	if exec > 0 {
		ttl = min(exec+o.StartupTimeout+5*time.Minute, MaxTimeout)
	}
	return exec, ttl, nil
}

// Credential is the workflow's GitHub credential: a PAT, or a GitHub App
// installation.
type Credential struct {
	PAT secret.Value
	App *github.App
}

// GitHubClient is a client for scope with cred (a PAT wins over an App).
func GitHubClient(ctx context.Context, scope string, cred Credential, o github.Options) (*github.Client, error) {
	sc, err := github.ParseScope(scope)
	if err != nil {
		return nil, err
	}
	if cred.PAT.Empty() && cred.App != nil {
		return github.NewAppClient(ctx, sc, o, *cred.App, nil)
	}
	if cred.PAT.Empty() {
		return nil, errors.New("no GitHub credential: give a token that may register runners (the github-pat input, GITHUB_PAT) or a GitHub App's (GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID, GITHUB_APP_PRIVATE_KEY)")
	}
	o.Token = cred.PAT
	return github.NewClient(sc, o)
}

// JITInput is the job input of a runner minted on the GitHub side: its
// JIT config and name, the worker's settings from o (runner user,
// timeouts) and the GPU needs; nothing else.
func JITInput(jit secret.Value, name string, o JITOptions) jobapi.Input {
	cfg := jit.Reveal()
	return jobapi.Input{
		JITConfig:    &cfg,
		RunnerName:   jobapi.String(name),
		RunnerUser:   jobapi.String(o.RunnerUser),
		IdleTimeout:  jobapi.Seconds(o.IdleTimeout),
		JobTimeout:   jobapi.Seconds(o.JobTimeout),
		GPUCount:     jobapi.Whole(int64(o.GPU.Count)),
		MinGPUMemory: jobapi.Whole(o.GPU.MinMemoryMiB),
	}
}

// Start mints one runner per label, submits one RunPod job per runner and
// waits until GitHub lists every runner online; a job that failed on an
// unfit worker is submitted again (o.UnfitRetries). On any failure, or when
// ctx ends, it cancels the RunPod jobs and deletes the runners it made,
// and says what it cleaned up in the error.
func (l *Launcher) Start(ctx context.Context, o JITOptions) ([]Runner, error) {
	exec, ttl, err := l.prepare(ctx, &o)
	if err != nil {
		return nil, err
	}
	ms, err := l.mint(ctx, o)
	if err == nil {
		err = l.tell(ms)
	}
	if err == nil {
		err = l.submit(ctx, ms, o, exec, ttl)
	}
	if err == nil {
		err = l.tell(ms)
	}
	if err == nil {
		err = l.wait(ctx, ms, o, exec, ttl)
	}
	rs := runnersOf(ms)
	if err != nil {
		return nil, l.redact(l.abandon(ctx, rs, err))
	}
	return rs, nil
}

// tell passes the runners to Submitted, if set.
func (l *Launcher) tell(ms []minted) error {
	if l.Submitted == nil {
		return nil
	}
	return l.Submitted(runnersOf(ms))
}

func runnersOf(ms []minted) []Runner {
	rs := make([]Runner, len(ms))
	for i, m := range ms {
		rs[i] = *m.Runner
	}
	return rs
}

// prepare checks the options and the endpoint (a wrong API key or
// endpoint id fails before anything is registered) and returns the jobs'
// execution timeout and ttl.
func (l *Launcher) prepare(ctx context.Context, o *JITOptions) (exec, ttl time.Duration, err error) {
	if l.Redactor == nil {
		l.Redactor = &secret.Redactor{}
	}
	if l.RunPod.Redactor == nil {
		l.RunPod.Redactor = l.Redactor
	}
	if err := l.RunPod.check(); err != nil {
		return 0, 0, err
	}
	if exec, ttl, err = o.check(); err != nil {
		return 0, 0, err
	}
	if _, err := l.RunPod.Health(ctx); err != nil {
		return 0, 0, fmt.Errorf("check the endpoint: %w", err)
	}
	return exec, ttl, nil
}

// redact removes the JIT configs from an error's text.
func (l *Launcher) redact(err error) error {
	if red := l.Redactor.Redact(err.Error()); red != err.Error() {
		return errors.New(red)
	}
	return err
}

// minted is a runner registered on GitHub, with its JIT config, and the
// RunPod jobs of it that failed on unfit workers.
type minted struct {
	*Runner
	jit   secret.Value
	unfit int
}

// mint registers the runners on GitHub; it returns those it made, also
// on an error (with one whose registration may have happened).
func (l *Launcher) mint(ctx context.Context, o JITOptions) ([]minted, error) {
	gid, err := l.GitHub.RunnerGroupID(ctx, o.RunnerGroup)
	if err != nil {
		return nil, err
	}
	var ms []minted
	for _, label := range o.Labels {
		id, jit, err := l.GitHub.JITConfig(ctx, label, gid, []string{label}, "_work")
		if conflict(err) {
			// At the first attempt (the client handles a 409 after a lost
			// answer itself): the runner is someone else's, never touched.
			return ms, fmt.Errorf("register runner %s on GitHub: a runner named %s already exists in %s (another workflow's, or a reused --label): "+
				"it is left alone; use another label, or let start make a unique one", label, label, l.GitHub.RunnerURL())
		}
		if err != nil {
			id, note := l.lostRunner(ctx, label, err)
			if id != 0 {
				ms = append(ms, minted{Runner: &Runner{Name: label, Label: label, RunnerID: id}})
			}
			return ms, fmt.Errorf("register runner %s on GitHub: %w%s", label, err, note)
		}
		l.Redactor.Add(jit)
		ms = append(ms, minted{Runner: &Runner{Name: label, Label: label, RunnerID: id}, jit: jit})
	}
	return ms, nil
}

// lostRunner is the id of the runner a registration that failed with
// err may have made all the same (its answer was lost), or 0; note says
// so when that runner could not be looked up.
func (l *Launcher) lostRunner(ctx context.Context, name string, err error) (id int64, note string) {
	if !github.Uncertain(err) {
		return 0, ""
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	r, found, ferr := l.GitHub.FindRunner(fctx, name)
	if ferr != nil {
		return 0, fmt.Sprintf("\nrunner %s may exist on GitHub all the same (the answer was lost) and could not be looked up (%v): "+
			"if the runner settings of %s list it, delete it", name, ferr, l.GitHub.RunnerURL())
	}
	if !found {
		return 0, ""
	}
	return r.ID, ""
}

// conflict is GitHub's 409: a runner of that name exists.
func conflict(err error) bool {
	var ae *github.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusConflict
}

// submit sends one RunPod job per runner, with only its JIT config.
func (l *Launcher) submit(ctx context.Context, ms []minted, o JITOptions, exec, ttl time.Duration) error {
	for i := range ms {
		if err := l.submitOne(ctx, &ms[i], o, exec, ttl); err != nil {
			return err
		}
	}
	return nil
}

// submitOne sends m's RunPod job: always the same input for a runner.
func (l *Launcher) submitOne(ctx context.Context, m *minted, o JITOptions, exec, ttl time.Duration) error {
	in := JITInput(m.jit, m.Name, o)
	j, err := l.RunPod.submit(ctx, in, exec, ttl, "its runner "+m.Name+" is deleted from GitHub now, so the job fails at once")
	if err != nil {
		return fmt.Errorf("submit the RunPod job of runner %s: %w", m.Name, err)
	}
	m.JobID = j.ID
	l.progress("runner %s (GitHub id %d): RunPod job %s %s", m.Name, m.RunnerID, j.ID, j.Status)
	return nil
}

func (l *Launcher) progress(format string, args ...any) {
	if l.Progress != nil {
		fmt.Fprintln(l.Progress, l.Redactor.Redact(fmt.Sprintf(format, args...)))
	}
}

// wait polls GitHub and RunPod until every runner is online in the same
// round (one that came online and went away fails it); it fails when a
// RunPod job ends first (one that failed on an unfit worker is submitted
// again, up to o.UnfitRetries times), when GitHub drops a runner that
// never ran, or after o.StartupTimeout with what RunPod says. An API that
// fails for a while (5xx, 429, no answer) is no answer yet.
func (l *Launcher) wait(ctx context.Context, ms []minted, o JITOptions, exec, ttl time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, o.StartupTimeout)
	defer cancel()
	w := &waitState{states: make([]string, len(ms)), printed: make([]time.Time, len(ms)), online: make([]bool, len(ms)), began: time.Now(), timeout: o.StartupTimeout}
	poll := cmp.Or(l.PollMin, 2*time.Second)
	for {
		all, err := l.round(ctx, wctx, ms, w, o, exec, ttl)
		if err != nil {
			return err
		}
		if all {
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-wctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return fmt.Errorf("stopped while waiting for the runners: %w", context.Cause(ctx))
			}
			return l.timedOut(ctx, ms, w.states, o.StartupTimeout)
		case <-t.C:
		}
		poll = min(poll*2, cmp.Or(l.PollMax, 15*time.Second))
	}
}

// waitState is what wait knows of each runner.
type waitState struct {
	states  []string
	printed []time.Time
	online  []bool // came online at some point
	began   time.Time
	timeout time.Duration
}

// round looks at every runner once and reports whether all are online.
func (l *Launcher) round(ctx, wctx context.Context, ms []minted, w *waitState, o JITOptions, exec, ttl time.Duration) (bool, error) {
	ls := l.list(wctx, ms)
	all := true
	for i := range ms {
		job := ms[i].JobID
		st, err := l.lookOrRetry(ctx, wctx, &ms[i], ls, o, exec, ttl)
		if err == nil && ms[i].JobID != job { // submitted again: a new job
			err = l.tell(ms)
		}
		if wctx.Err() != nil {
			return false, nil
		}
		if err != nil && w.online[i] {
			return false, fmt.Errorf("runner %s came online, then went away before all %d runners were online: %w", ms[i].Name, len(ms), err)
		}
		if err != nil {
			return false, err
		}
		// A line when something changed, and a reminder each minute.
		if st != "" && (st != w.states[i] || time.Since(w.printed[i]) >= time.Minute) {
			l.progress("runner %s: %s (%v of %v)", ms[i].Name, st, time.Since(w.began).Round(time.Second), w.timeout)
			w.printed[i] = time.Now()
		}
		w.states[i] = st
		if st == stateOnline {
			w.online[i] = true
		} else {
			all = false
		}
	}
	return all, nil
}

const stateOnline = "online"

// listAbove is the number of runners above which a round reads GitHub's
// runner list instead of one GET per runner.
const listAbove = 4

// listing is GitHub's runner list of one round: the runners by id;
// complete when it holds every runner of the scope; err when it failed.
type listing struct {
	byID     map[int64]github.RegisteredRunner
	complete bool
	err      error
}

// list reads GitHub's runner list for a round of many runners (up to
// github.MaxFindPages pages), or returns nil for few.
func (l *Launcher) list(ctx context.Context, ms []minted) *listing {
	if len(ms) <= listAbove {
		return nil
	}
	ls := &listing{byID: map[int64]github.RegisteredRunner{}}
	for page, n := 1, 0; page != 0 && n < github.MaxFindPages; n++ {
		var rs []github.RegisteredRunner
		if rs, page, ls.err = l.GitHub.RunnersPage(ctx, page); ls.err != nil {
			return ls
		}
		for _, r := range rs {
			ls.byID[r.ID] = r
		}
		ls.complete = page == 0
	}
	return ls
}

// githubRunner is GitHub's view of runner id: from ls when it has it,
// else one GET.
func (l *Launcher) githubRunner(ctx context.Context, id int64, ls *listing) (github.RegisteredRunner, bool, error) {
	if ls != nil && ls.err != nil {
		return github.RegisteredRunner{}, false, ls.err
	}
	if ls != nil {
		if r, ok := ls.byID[id]; ok || ls.complete {
			return r, ok, nil
		}
	}
	return l.GitHub.GetRunner(ctx, id)
}

// transient reports whether a failed GitHub or RunPod call is worth
// asking again: a 5xx, a 429, or no answer at all (a transport error or
// a call's own timeout; the wait's end is round's to see).
func transient(err error) bool {
	var ge *github.APIError
	var re *APIError
	switch {
	case errors.As(err, &re):
		return re.Status == http.StatusTooManyRequests || re.Status >= 500
	case errors.As(err, &ge):
		return ge.Status == 0 || ge.Status == http.StatusTooManyRequests || ge.Status >= 500
	}
	return err != nil
}

// look returns a runner's state: stateOnline once GitHub lists it online
// or busy (or it already ran its job), else what RunPod and GitHub say
// ("no answer yet" while either fails for a while).
func (l *Launcher) look(ctx context.Context, r Runner, ls *listing) (string, error) {
	gr, found, err := l.githubRunner(ctx, r.RunnerID, ls)
	if transient(err) {
		return "no answer yet from GitHub: " + clip(err.Error(), 200), nil
	}
	if err != nil {
		return "", fmt.Errorf("ask GitHub about runner %s: %w", r.Name, err)
	}
	if found && (len(gr.Labels) != 1 || !strings.EqualFold(gr.Labels[0], r.Label)) {
		return "", fmt.Errorf("GitHub lists runner %s with the labels %s, not only %s: jobs asking for the others could take it, so it is not used",
			r.Name, strings.Join(gr.Labels, ", "), r.Label)
	}
	if found && (gr.Status == "online" || gr.Busy) {
		return stateOnline, nil
	}
	j, err := l.RunPod.Status(ctx, r.JobID)
	if transient(err) {
		return "no answer yet from RunPod: " + clip(err.Error(), 200), nil
	}
	if err != nil {
		return "", fmt.Errorf("ask RunPod about job %s of runner %s: %w", r.JobID, r.Name, err)
	}
	switch {
	case j.Status == jobapi.Completed, !found && j.Status == jobapi.InProgress:
		// It came online and ran its job (GitHub's answer, asked first,
		// predates that; or GitHub removed the ephemeral runner).
		return stateOnline, nil
	case !found:
		return "", fmt.Errorf("GitHub no longer lists runner %s, which never came online (deleted by someone?); its RunPod job %s is %s", r.Name, r.JobID, j.Status)
	case j.Status == jobapi.Failed:
		if rep, ok := jobapi.ParseErrorReport(j.Error); ok {
			return "", &unfitEnd{j, rep}
		}
		return "", jobEnded(r, j)
	case j.Status.Terminal():
		return "", jobEnded(r, j)
	}
	return fmt.Sprintf("RunPod job %s %s, GitHub %s", r.JobID, j.Status, gr.Status), nil
}

// lookOrRetry is look (with wctx), but a job that failed on an unfit
// worker is submitted again (with ctx: a /run cut off midway could leave
// a job behind), and the state is "" then.
func (l *Launcher) lookOrRetry(ctx, wctx context.Context, m *minted, ls *listing, o JITOptions, exec, ttl time.Duration) (string, error) {
	st, err := l.look(wctx, *m.Runner, ls)
	var ue *unfitEnd
	if wctx.Err() == nil && errors.As(err, &ue) {
		return "", l.retryUnfit(ctx, m, ue, o, exec, ttl)
	}
	return st, err
}

// unfitEnd is a runner's RunPod job that failed on an unfit worker,
// before the runner started.
type unfitEnd struct {
	job    *Job
	report *jobapi.ErrorReport
}

func (e *unfitEnd) Error() string {
	return fmt.Sprintf("RunPod job %s failed on unfit worker %s: %s", e.job.ID, e.worker(), strings.Join(e.report.Problems(), "; "))
}

// worker is the worker's id, as RunPod or else the report gives it.
func (e *unfitEnd) worker() string {
	return jobapi.OneLine(cmp.Or(e.job.WorkerID, e.report.WorkerID, "unknown"), 64)
}

// retryUnfit submits m's job again after ue, or fails once m's jobs have
// failed on unfit workers more than o.UnfitRetries times.
func (l *Launcher) retryUnfit(ctx context.Context, m *minted, ue *unfitEnd, o JITOptions, exec, ttl time.Duration) error {
	m.unfit++
	if m.unfit > o.UnfitRetries {
		hint := "a broken host: RunPod replaces such workers; if it keeps happening, check the endpoint's GPU types against the image's CUDA version and the FITNESS_* settings"
		if ue.report.KeepWorker {
			hint = "a sound worker without the GPUs the job asks for: gpu-count or min-gpu-memory-mb ask for more than the endpoint's GPU types have"
		}
		attempts := fmt.Sprintf("each of %d attempts", m.unfit)
		if m.unfit == 1 {
			attempts = "its only attempt"
		}
		return fmt.Errorf("runner %s did not start: its RunPod job failed on an unfit worker on %s (unfit retries: %d); the last: %v (%s)",
			m.Name, attempts, o.UnfitRetries, ue, hint)
	}
	l.progress("runner %s: %v; its runner never started, so the same job is submitted again (unfit retry %d of %d)",
		m.Name, ue, m.unfit, o.UnfitRetries)
	return l.submitOne(ctx, m, o, exec, ttl)
}

// jobEnded explains a RunPod job that ended before its runner came online.
func jobEnded(r Runner, j *Job) error {
	what := fmt.Sprintf("RunPod job %s of runner %s ended %s before the runner came online", r.JobID, r.Name, j.Status)
	switch j.Status {
	case jobapi.Failed:
		msg := clip(j.Error, 500)
		if strings.Contains(msg, "jitconfig") && strings.Contains(msg, "unknown field") {
			msg += " (the endpoint's image predates runners minted on the GitHub side: update it, or use registration: endpoint)"
		}
		return fmt.Errorf("%s: the worker says: %s", what, msg)
	case jobapi.TimedOut:
		return fmt.Errorf("%s: it reached its execution timeout", what)
	case jobapi.Cancelled:
		return fmt.Errorf("%s: someone cancelled it", what)
	}
	return fmt.Errorf("%s (output: %s)", what, clip(fmt.Sprint(j.Output), 300))
}

func clip(s string, n int) string {
	if s = strings.TrimSpace(s); len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// timedOut explains runners that did not come online in time.
func (l *Launcher) timedOut(ctx context.Context, ms []minted, states []string, timeout time.Duration) error {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	h, herr := l.RunPod.Health(hctx)
	if herr != nil {
		h = nil
	}
	var why []string
	for i, m := range ms {
		switch st := states[i]; {
		case st == stateOnline:
		case strings.Contains(st, string(jobapi.InQueue)):
			why = append(why, fmt.Sprintf("RunPod job %s of runner %s is still IN_QUEUE: no worker took it (%s)", m.JobID, m.Name, noWorker(h)))
		case strings.Contains(st, string(jobapi.InProgress)):
			why = append(why, fmt.Sprintf("a worker took RunPod job %s, but runner %s did not come online on GitHub (see the endpoint's logs)", m.JobID, m.Name))
		default:
			why = append(why, fmt.Sprintf("runner %s: %s", m.Name, cmp.Or(st, "no answer yet")))
		}
	}
	if h != nil {
		w := h.Workers
		why = append(why, fmt.Sprintf("the endpoint has %d jobs queued, %d in progress; workers: %d idle, %d running, %d initializing, %d throttled, %d unhealthy",
			h.Jobs.InQueue, h.Jobs.InProgress, w.Idle, w.Running, w.Initializing, w.Throttled, w.Unhealthy))
	}
	return fmt.Errorf("the runners did not come online within the startup timeout (%v): %s", timeout, strings.Join(why, "; "))
}

// noWorker says why no worker took a queued job, from the endpoint's
// /health (nil: unknown).
func noWorker(h *jobapi.Health) string {
	switch {
	case h != nil && h.Workers.Throttled > 0:
		return fmt.Sprintf("no capacity: %d of the endpoint's workers are throttled, waiting for a machine of its GPU types to be free", h.Workers.Throttled)
	case h != nil && h.Workers.Unhealthy > 0:
		return fmt.Sprintf("%d of the endpoint's workers are unhealthy: they crashed or did not start (see the endpoint's logs)", h.Workers.Unhealthy)
	case h != nil && h.Workers.Initializing > 0:
		return fmt.Sprintf("%d of the endpoint's workers are still initializing (pulling the image)", h.Workers.Initializing)
	}
	return "no capacity: the endpoint's max workers are busy, or none of its GPU types is free"
}

// abandon cleans up after a failed start: cancels the RunPod jobs,
// deletes the runners, and adds what it did to cause. When ctx was
// cancelled (the workflow was), it has CancelCleanupTimeout.
func (l *Launcher) abandon(ctx context.Context, rs []Runner, cause error) error {
	if len(rs) == 0 {
		return cause
	}
	budget := cmp.Or(l.CleanupTimeout, 2*time.Minute)
	if errors.Is(ctx.Err(), context.Canceled) {
		budget = min(budget, cmp.Or(l.CancelCleanupTimeout, 8*time.Second))
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	var jobs []string
	var ids []int64
	for _, r := range rs {
		if r.JobID != "" {
			jobs = append(jobs, r.JobID)
		}
		ids = append(ids, r.RunnerID)
	}
	done, err := l.Stop(cctx, jobs, ids)
	if err != nil {
		return fmt.Errorf("%w\ncleanup FAILED (%v); done: %s", cause, err, strings.Join(done, "; "))
	}
	return fmt.Errorf("%w\ncleaned up: %s", cause, strings.Join(done, "; "))
}

// Stop cancels the RunPod jobs still running (a job RunPod forgot counts
// as stopped), then deletes the runners GitHub still lists (one GitHub
// already removed counts as deleted; a busy one is retried until ctx
// ends), each side's calls at once, so that a cancelled workflow's few
// seconds suffice. It goes through all of them and returns what it did,
// one line each, and every failure.
func (l *Launcher) Stop(ctx context.Context, jobIDs []string, runnerIDs []int64) ([]string, error) {
	done, errs := concurrently(len(jobIDs), func(i int) (string, error) { return l.stopJob(ctx, jobIDs[i]) })
	rdone, rerrs := concurrently(len(runnerIDs), func(i int) (string, error) { return l.deleteRunner(ctx, runnerIDs[i]) })
	return append(done, rdone...), errors.Join(append(errs, rerrs...)...)
}

// maxConcurrent bounds the calls Stop makes at once.
const maxConcurrent = 16

// concurrently runs f for 0..n-1, up to maxConcurrent at once, and
// returns the lines and errors in order.
func concurrently(n int, f func(int) (string, error)) ([]string, []error) {
	lines, errs := make([]string, n), make([]error, n)
	sem := make(chan struct{}, maxConcurrent)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			lines[i], errs[i] = f(i)
		}()
	}
	wg.Wait()
	var out []string
	var failed []error
	for i := range n {
		if errs[i] != nil {
			failed = append(failed, errs[i])
		} else {
			out = append(out, lines[i])
		}
	}
	return out, failed
}

func (l *Launcher) stopJob(ctx context.Context, id string) (string, error) {
	res, err := l.RunPod.Stop(ctx, id)
	switch {
	case err != nil:
		return "", fmt.Errorf("cancel RunPod job %s: %w", id, err)
	case res.Gone:
		return fmt.Sprintf("RunPod job %s: RunPod no longer knows it (ended and dropped): nothing to cancel", id), nil
	case res.Cancelled:
		return fmt.Sprintf("RunPod job %s: cancelled", id), nil
	}
	return fmt.Sprintf("RunPod job %s: already ended (%s)", id, res.Job.Status), nil
}

// deleteRunner deletes runner id; when GitHub's lookup fails it deletes
// all the same (a 404 then counts as deleted too).
func (l *Launcher) deleteRunner(ctx context.Context, id int64) (string, error) {
	if l.GitHub == nil {
		return "", fmt.Errorf("runner %d: no GitHub credential to delete it with", id)
	}
	r, found, err := l.GitHub.GetRunner(ctx, id)
	if err == nil && !found {
		return fmt.Sprintf("runner %d: GitHub already removed it", id), nil
	}
	if derr := l.GitHub.DeleteRunner(ctx, id); derr != nil {
		if err != nil {
			return "", fmt.Errorf("delete runner %d: %w (looking it up failed too: %v)", id, derr, err)
		}
		return "", fmt.Errorf("delete runner %s (%d): %w", r.Name, id, derr)
	}
	if err != nil {
		return fmt.Sprintf("runner %d: deleted, or already gone (looking it up failed: %v)", id, err), nil
	}
	return fmt.Sprintf("runner %s (%d, %s): deleted", r.Name, id, r.Status), nil
}
