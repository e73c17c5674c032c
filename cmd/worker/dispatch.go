package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/dispatch"
	"github.com/runpod-workers/worker-github_runner/internal/github"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/jobhandler"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

const dispatchUsage = `Usage:
  worker dispatch start --endpoint ID --github-org ORG [--count N] [--runner-group G] [--startup-timeout 10m]
                        [--idle-timeout 5m] [--job-timeout 6h] [--runner-user runner|root]
                        [--gpu-count N] [--min-gpu-memory-mb MIB] [--unfit-retries 2]
  worker dispatch stop  --endpoint ID --job-ids IDS --runner-ids IDS --scope SCOPE [--github-org ORG]

start (registration jit, the default) registers N ephemeral runners on GitHub with the workflow's
credential (GitHub's generate-jitconfig), each with exactly one label, unique to it, and sends
the RunPod endpoint only each runner's JIT config: the endpoint needs no GitHub credential. It
returns once GitHub lists every runner online; if that does not happen within --startup-timeout
(a RunPod job still queued for lack of capacity, a worker that failed), it cancels the RunPod jobs,
deletes the runners, and fails with what RunPod said. A RunPod job that failed on an unfit worker
(its fitness check found a broken host, or fewer GPUs or less GPU memory than --gpu-count and
--min-gpu-memory-mb ask for) never started its runner: start submits it again, up to
--unfit-retries times, so that another worker takes it. With --count over 1, each worker's idle
timeout is --idle-timeout + --startup-timeout (a runner online early waits for the others), and
every runner must be online in the same last look. A RunPod or GitHub API that fails for a while
(5xx, 429, no answer) while start waits is logged and asked again until the startup timeout.
Outputs: label and job-id (for one runner), labels, job-ids and runner-ids (JSON lists, for
fromJSON), scope (where the runners are registered), status. labels, job-ids, runner-ids and
scope are written as soon as the runners exist (status starting), so that a stop job with
if: always() can finish a cleanup that a cancelled start cut short; on SIGINT or SIGTERM start
cancels the RunPod jobs, then deletes the runners, within 8 seconds.

stop cancels the RunPod jobs still running and deletes the runners GitHub still lists; a job RunPod
forgot and a runner GitHub already removed count as stopped. --job-ids, --runner-ids and --scope take
the start's outputs (a JSON list, or ids separated by commas). Given both --scope and --github-org,
stop refuses when they differ: GitHub's 404 from another scope would pass for a removed runner.

--registration endpoint (legacy, the seed's pattern): the worker registers the runner itself, with
the endpoint's GitHub credential, or with GITHUB_PAT sent inside the RunPod job input. The runner
has the labels self-hosted, linux, the architecture, runpod, the flavour, --labels and the unique
label, so any job of the scope that asks for those can take it; start returns once RunPod queued
the job, and stop only cancels the job.

Environment: RUNPOD_API_KEY (required); GITHUB_PAT, or GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID and
GITHUB_APP_PRIVATE_KEY (registration jit); GITHUB_API_URL (GitHub Enterprise Server; Actions sets
it); GITHUB_OUTPUT (outputs are appended there as key=value); RUNPOD_API_URL (default ` + dispatch.DefaultAPIURL + `).
Secrets are read from the environment only, never from flags.

Flags:
`

// dispatchFlags are runDispatch's flags.
type dispatchFlags struct {
	endpoint, apiURL, org, registration, labels, label, group, ghAPI, runnerUser string
	jobID, jobIDs, runnerIDs, scope                                              string
	count, gpuCount, unfitRetries                                                int
	minGPUMem                                                                    int64
	idle, job, ttl, startup, timeout                                             time.Duration
}

func newDispatchFlags(verb string, stderr io.Writer, getenv func(string) string) (*flag.FlagSet, *dispatchFlags) {
	fs := flag.NewFlagSet("dispatch "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dispatchUsage); fs.PrintDefaults() }
	f := &dispatchFlags{}
	fs.StringVar(&f.endpoint, "endpoint", getenv("RUNPOD_ENDPOINT"), "RunPod endpoint id")
	fs.StringVar(&f.apiURL, "api-url", getenv("RUNPOD_API_URL"), "RunPod endpoint API base")
	fs.StringVar(&f.org, "github-org", getenv(jobapi.EnvOrg), "organisation, owner/repo or enterprises/<slug>")
	fs.StringVar(&f.registration, "registration", "jit", "jit: mint the runners here, the endpoint needs no GitHub credential; endpoint: the worker registers with the endpoint's credential (legacy)")
	fs.StringVar(&f.labels, "labels", "", "registration endpoint only: extra runner labels, comma-separated")
	fs.StringVar(&f.label, "label", "", "the unique label (default: runpod-<run id>-<attempt>-<random>; -1, -2... appended for --count over 1)")
	fs.IntVar(&f.count, "count", 1, "registration jit: runners to start, each with a label of its own")
	fs.StringVar(&f.group, "runner-group", "", "runner group name (organisations and enterprises)")
	fs.StringVar(&f.ghAPI, "github-api-url", "", "GitHub Enterprise Server API URL (registration jit default: GITHUB_API_URL)")
	fs.StringVar(&f.runnerUser, "runner-user", "", "runner (default) or root: jobs run as root")
	fs.DurationVar(&f.idle, "idle-timeout", 5*time.Minute, "the worker gives up when no workflow job arrives in this time")
	fs.DurationVar(&f.job, "job-timeout", 6*time.Hour, "stop a workflow job that runs longer; the RunPod job's execution timeout is idle + job timeout + 10m, at most 7 days")
	fs.DurationVar(&f.ttl, "ttl", 0, "RunPod's ttl: how long the job may exist, queued and running (0: the execution timeout + the startup timeout + 5m; registration endpoint: + 24h; at most 7 days)")
	fs.DurationVar(&f.startup, "startup-timeout", dispatch.DefaultStartupTimeout, "registration jit: fail (and clean up) when the runners are not online on GitHub by then")
	fs.StringVar(&f.jobID, "job-id", "", "stop: the RunPod job to stop")
	fs.StringVar(&f.jobIDs, "job-ids", "", "stop: the RunPod jobs to stop (start's job-ids output)")
	fs.StringVar(&f.runnerIDs, "runner-ids", "", "stop: the GitHub runners to delete (start's runner-ids output)")
	fs.StringVar(&f.scope, "scope", "", "stop: where start registered the runners (start's scope output); stop refuses another --github-org")
	fs.IntVar(&f.gpuCount, "gpu-count", 0, "GPUs each runner's host must have (job input gpu_count; 0: the endpoint's FITNESS_GPU_COUNT)")
	fs.Int64Var(&f.minGPUMem, "min-gpu-memory-mb", 0, "MiB of memory each of the host's GPUs must have (job input min_gpu_memory_mb; 0: the endpoint's FITNESS_MIN_GPU_MEMORY_MB)")
	fs.IntVar(&f.unfitRetries, "unfit-retries", 2, fmt.Sprintf("registration jit: how many times a runner's RunPod job that failed on an unfit worker (a broken host, or one short of the GPU needs) is submitted again, within the startup timeout (0 to %d)", dispatch.MaxUnfitRetries))
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up on RunPod's and GitHub's APIs after this long (besides the startup timeout)")
	return fs, f
}

// runDispatch is `worker dispatch start|stop`: what the composite action
// runs on a GitHub-hosted runner. Secrets come from the environment
// (RUNPOD_API_KEY, GITHUB_PAT, GITHUB_APP_*), never from flags, so they
// stay out of argv.
func runDispatch(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 || (args[0] != "start" && args[0] != "stop") {
		fmt.Fprint(stderr, dispatchUsage)
		return 2
	}
	fs, f := newDispatchFlags(args[0], stderr, getenv)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dispatch %s: unexpected argument %s\n", args[0], secret.Preview(fs.Arg(0)))
		return 2
	}
	if f.registration != "jit" && f.registration != "endpoint" {
		fmt.Fprintf(stderr, "dispatch %s: --registration must be jit or endpoint\n", args[0])
		return 2
	}
	if f.timeout <= 0 {
		fmt.Fprintf(stderr, "dispatch %s: --timeout must be positive, not %v\n", args[0], f.timeout)
		return 2
	}
	red := &secret.Redactor{}
	for _, k := range []string{"RUNPOD_API_KEY", jobapi.EnvPAT, jobapi.EnvAppPrivateKey} {
		red.Add(secret.New(getenv(k)))
	}
	stderr = redacting{stderr, red}
	for _, w := range jobhandler.StartupWarnings(getenv) {
		fmt.Fprintln(stderr, "WARNING:", w)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	budget := f.timeout
	if args[0] == "start" && f.registration == "jit" {
		budget += f.startup
	}
	ctx, cancelT := context.WithTimeout(ctx, budget)
	defer cancelT()
	d := dispatcher{f: f, getenv: getenv, stdout: stdout, stderr: stderr, red: red,
		rp: &dispatch.Client{APIURL: f.apiURL, Endpoint: f.endpoint, APIKey: secret.New(getenv("RUNPOD_API_KEY")), Redactor: red}}
	var err error
	switch {
	case args[0] == "start" && f.registration == "jit":
		err = d.startJIT(ctx)
	case args[0] == "start":
		err = d.startEndpoint(ctx)
	default:
		err = d.stop(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dispatch %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// output is one step output.
type output struct{ key, value string }

type dispatcher struct {
	f              *dispatchFlags
	getenv         func(string) string
	stdout, stderr io.Writer
	red            *secret.Redactor
	rp             *dispatch.Client
}

// redacting writes through a redactor: what dispatch prints goes to the
// workflow's log.
type redacting struct {
	w   io.Writer
	red *secret.Redactor
}

func (r redacting) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.red.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// labels are the runners' unique labels: --label (or a new one), with
// -1, -2... for more than one runner.
func (d *dispatcher) labels() []string {
	l := d.f.label
	if l == "" {
		l = dispatch.UniqueLabel(d.getenv("GITHUB_RUN_ID"), d.getenv("GITHUB_RUN_ATTEMPT"))
	}
	if d.f.count == 1 {
		return []string{l}
	}
	var ls []string
	for i := 1; i <= d.f.count; i++ {
		ls = append(ls, fmt.Sprintf("%s-%d", l, i))
	}
	return ls
}

// startJIT starts the runners: their ids reach GITHUB_OUTPUT as soon as
// they exist (the stop job finishes a cleanup a cancelled start cut
// short), and the final outputs before start reports success; when they
// cannot be written, the runners are removed again.
func (d *dispatcher) startJIT(ctx context.Context) error {
	switch {
	case strings.TrimSpace(d.f.labels) != "":
		return errors.New("--labels: with registration jit each runner has exactly one label, its unique one (any shared label lets other jobs take it); use registration endpoint for extra labels")
	case d.f.count < 1 || d.f.count > dispatch.MaxRunners:
		return fmt.Errorf("--count must be 1 to %d", dispatch.MaxRunners)
	case d.f.org == "":
		return errors.New("no github_org: set the github-org input")
	}
	l, scope, err := d.launcher(ctx, d.f.org)
	if err != nil {
		return err
	}
	l.Submitted = func(rs []dispatch.Runner) error { return d.write(runnerOutputs(rs, scope, "starting")) }
	rs, err := l.Start(ctx, dispatch.JITOptions{Labels: d.labels(), RunnerGroup: d.f.group, RunnerUser: d.f.runnerUser,
		IdleTimeout: d.f.idle, JobTimeout: d.f.job, TTL: d.f.ttl, StartupTimeout: d.f.startup, GPU: d.gpu(), UnfitRetries: d.f.unfitRetries})
	if err != nil {
		return err
	}
	if err := d.write(runnerOutputs(rs, scope, "online")); err != nil {
		return d.undo(ctx, l, rs, err)
	}
	for _, r := range rs {
		fmt.Fprintf(d.stderr, "runner %s is online (GitHub runner %d, RunPod job %s)\n", r.Name, r.RunnerID, r.JobID)
	}
	return nil
}

// undo removes runners Start made after all (their outputs could not be
// written) and adds what it did to cause.
func (d *dispatcher) undo(ctx context.Context, l *dispatch.Launcher, rs []dispatch.Runner, cause error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var jobs []string
	var ids []int64
	for _, r := range rs {
		jobs, ids = append(jobs, r.JobID), append(ids, r.RunnerID)
	}
	done, err := l.Stop(cctx, jobs, ids)
	if err != nil {
		return fmt.Errorf("%w\ncleanup FAILED (%v); done: %s", cause, err, strings.Join(done, "; "))
	}
	return fmt.Errorf("%w\ncleaned up: %s", cause, strings.Join(done, "; "))
}

// runnerOutputs are start's outputs for rs in scope.
func runnerOutputs(rs []dispatch.Runner, scope, status string) []output {
	labels, jobs, ids := []string{}, []string{}, []int64{}
	for _, r := range rs {
		labels, ids = append(labels, r.Label), append(ids, r.RunnerID)
		if r.JobID != "" { // not yet submitted
			jobs = append(jobs, r.JobID)
		}
	}
	out := []output{{"labels", jsonList(labels)}, {"job-ids", jsonList(jobs)}, {"runner-ids", jsonList(ids)}, {"scope", scope}, {"status", status}}
	if len(rs) == 1 {
		out = append(out, output{"label", labels[0]}, output{"job-id", rs[0].JobID})
	}
	return out
}

// gpu is what the runners' hosts must have.
func (d *dispatcher) gpu() dispatch.GPUNeeds {
	return dispatch.GPUNeeds{Count: d.f.gpuCount, MinMemoryMiB: d.f.minGPUMem}
}

// launcher is a Launcher with the workflow's GitHub credential for org,
// and org's canonical scope.
func (d *dispatcher) launcher(ctx context.Context, org string) (*dispatch.Launcher, string, error) {
	sc, err := github.ParseScope(org)
	if err != nil {
		return nil, "", err
	}
	cred, err := credential(d.getenv)
	if err != nil {
		return nil, "", err
	}
	api := d.f.ghAPI
	if api == "" {
		api = d.getenv(jobapi.EnvAPIURL)
	}
	gh, err := dispatch.GitHubClient(ctx, org, cred, github.Options{APIURL: api,
		TestOnlyAllowLoopbackHTTP: d.getenv(jobhandler.EnvTestLoopbackHTTP) == "1"})
	if err != nil {
		return nil, "", err
	}
	return &dispatch.Launcher{RunPod: d.rp, GitHub: gh, Progress: d.stderr, Redactor: d.red}, sc.String(), nil
}

// credential reads the workflow's GitHub credential: GITHUB_PAT, else a
// GitHub App's three variables.
func credential(getenv func(string) string) (dispatch.Credential, error) {
	if pat := strings.TrimSpace(getenv(jobapi.EnvPAT)); pat != "" {
		return dispatch.Credential{PAT: secret.New(pat)}, nil
	}
	id, inst, key := getenv(jobapi.EnvAppID), getenv(jobapi.EnvAppInstall), getenv(jobapi.EnvAppPrivateKey)
	if id == "" && inst == "" && key == "" {
		return dispatch.Credential{}, nil
	}
	a, errA := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
	b, errB := strconv.ParseInt(strings.TrimSpace(inst), 10, 64)
	if errA != nil || errB != nil || a <= 0 || b <= 0 || key == "" {
		return dispatch.Credential{}, errors.New("GitHub App credentials need GITHUB_APP_ID and GITHUB_APP_INSTALLATION_ID (positive numbers) and GITHUB_APP_PRIVATE_KEY")
	}
	return dispatch.Credential{App: &github.App{ID: a, InstallationID: b, PrivateKey: secret.New(key)}}, nil
}

// startEndpoint is the legacy mode: the worker registers the runner.
func (d *dispatcher) startEndpoint(ctx context.Context) error {
	if d.f.count != 1 {
		return errors.New("--count: registration endpoint starts one runner")
	}
	l := d.labels()[0]
	if err := dispatch.CheckLabel(l); err != nil {
		return fmt.Errorf("--label: %w", err)
	}
	all := []string{l}
	for _, x := range strings.Split(d.f.labels, ",") {
		if x = strings.TrimSpace(x); x != "" {
			all = append(all, x)
		}
	}
	pat := secret.New(strings.TrimSpace(d.getenv(jobapi.EnvPAT)))
	if !pat.Empty() {
		fmt.Fprintln(d.stderr, "registration endpoint (legacy): the GitHub token travels inside the RunPod job input; registration jit keeps it here")
	}
	j, err := d.rp.Start(ctx, dispatch.StartOptions{Scope: d.f.org, PAT: pat, Labels: all, RunnerGroup: d.f.group,
		APIURL: d.f.ghAPI, RunnerUser: d.f.runnerUser, IdleTimeout: d.f.idle, JobTimeout: d.f.job, TTL: d.f.ttl, GPU: d.gpu()})
	if err != nil {
		return err
	}
	if err := d.write([]output{{"job-id", j.ID}, {"job-ids", jsonList([]string{j.ID})}, {"label", l}, {"labels", jsonList([]string{l})}, {"status", string(j.Status)}}); err != nil {
		return fmt.Errorf("RunPod job %s (%s) was started, but: %w", jobapi.OneLine(j.ID, 64), jobapi.OneLine(string(j.Status), 32), err)
	}
	fmt.Fprintf(d.stderr, "started RunPod job %s (%s); the runner has label %s\n", j.ID, j.Status, l)
	return nil
}

func (d *dispatcher) stop(ctx context.Context) error {
	jobs, err := parseList(d.f.jobIDs, "--job-ids")
	if err != nil {
		return err
	}
	if d.f.jobID != "" {
		jobs = append(jobs, d.f.jobID)
	}
	ids, err := runnerIDs(d.f.runnerIDs)
	if err != nil {
		return err
	}
	if len(jobs) == 0 && len(ids) == 0 {
		fmt.Fprintln(d.stderr, "nothing to stop: no job or runner ids (did start fail? it cleans up after itself)")
		return d.write([]output{{"status", "nothing"}})
	}
	l := &dispatch.Launcher{RunPod: d.rp}
	if len(ids) > 0 {
		org, err := d.stopScope()
		if err != nil {
			return err
		}
		if l, _, err = d.launcher(ctx, org); err != nil {
			return err
		}
	}
	done, err := l.Stop(ctx, jobs, ids)
	for _, line := range done {
		fmt.Fprintln(d.stderr, line)
	}
	if err != nil {
		return err
	}
	return d.write([]output{{"job-ids", jsonList(jobs)}, {"runner-ids", jsonList(ids)}, {"status", "stopped"}})
}

// stopScope is where stop looks for the runners: --scope (start's scope
// output) or --github-org; both given, they must agree, since GitHub's
// 404 from another scope would pass for a runner already removed.
func (d *dispatcher) stopScope() (string, error) {
	org, scope := strings.TrimSpace(d.f.org), strings.TrimSpace(d.f.scope)
	switch {
	case scope == "" && org == "":
		return "", errors.New("--runner-ids: set the github-org the runners were registered in (or scope, start's scope output)")
	case scope == "":
		return org, nil
	case org == "":
		return scope, nil
	}
	a, errA := github.ParseScope(org)
	b, errB := github.ParseScope(scope)
	if err := errors.Join(errA, errB); err != nil {
		return "", err
	}
	if !strings.EqualFold(a.String(), b.String()) {
		return "", fmt.Errorf("the runners were registered in %s (start's scope output), but github-org is %s: give stop the github-org start had; "+
			"nothing was stopped (GitHub would answer 404 from %s, which reads as already removed)", b, a, a)
	}
	return scope, nil
}

// parseList reads a JSON list of strings or numbers, or a list separated
// by commas or white space.
func parseList(s, what string) ([]string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return nil, fmt.Errorf("%s is not a JSON list", what)
		}
		var out []string
		for _, r := range raw {
			var v string
			if json.Unmarshal(r, &v) != nil {
				v = string(r)
			}
			out = append(out, v)
		}
		return out, nil
	}
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }), nil
}

func runnerIDs(s string) ([]int64, error) {
	list, err := parseList(s, "--runner-ids")
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, x := range list {
		id, err := strconv.ParseInt(x, 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("--runner-ids: %s is not a runner id", secret.Preview(x))
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func jsonList[T any](l []T) string {
	if l == nil {
		l = []T{}
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// write appends outputs to GITHUB_OUTPUT (stdout without it); a value
// with a line break is refused: it could set other outputs.
func (d *dispatcher) write(outputs []output) error {
	var b strings.Builder
	for _, o := range outputs {
		if strings.ContainsAny(o.value, "\r\n") {
			return fmt.Errorf("output %s: the value %s has a line break: not written", o.key, secret.Preview(o.value))
		}
		fmt.Fprintf(&b, "%s=%s\n", o.key, o.value)
	}
	path := d.getenv("GITHUB_OUTPUT")
	if path == "" {
		_, err := io.WriteString(d.stdout, b.String())
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("GITHUB_OUTPUT: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("GITHUB_OUTPUT: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("GITHUB_OUTPUT: %w", err)
	}
	return nil
}
