package scaler

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/runpod-workers/worker-github_runner/internal/dispatch"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// Config is the scaler's configuration file, without secrets.
type Config struct {
	// GitHubURL is where the scale sets live: https://github.com/org,
	// https://github.com/owner/repo, https://github.com/enterprises/slug,
	// or the same on a GitHub Enterprise Server host.
	GitHubURL string
	// RunPodAPI is RunPod's endpoint API (default DefaultRunPodAPI).
	RunPodAPI string
	// StateFile keeps the runners the scaler started across restarts.
	StateFile string
	// Listen is the address of /metrics and /healthz ("" : not served).
	Listen string
	// CheckInterval is how often each runner's RunPod job is looked at.
	CheckInterval time.Duration
	// SessionRetry is how long a scaler whose session another one holds
	// waits before asking again (Options.SessionRetry; 0: its default).
	SessionRetry time.Duration
	// FinishGrace is Options.FinishGrace (0: its default).
	FinishGrace time.Duration
	ScaleSets   []ScaleSetConfig
	// Warnings are doubtful settings the scaler runs with (logged at
	// start, printed by --check).
	Warnings []string
}

// ScaleSetConfig is one scale set: its name is the runs-on label.
type ScaleSetConfig struct {
	Name        string
	Labels      []string // extra labels (GHES 3.18+ needs a feature flag)
	RunnerGroup string
	Endpoint    string // the RunPod endpoint id
	MinRunners  int
	MaxRunners  int
	IdleTimeout time.Duration
	JobTimeout  time.Duration
	RunnerUser  string // the worker's runner_user ("" : the endpoint's)
	// UnfitRetries is how many times a runner's RunPod job that failed on
	// an unfit worker (its fitness check failed before the runner
	// started) is submitted again with the same, unused JIT config
	// (default 2, at most dispatch.MaxUnfitRetries).
	UnfitRetries int
	// HealthCapacity caps the capacity while the endpoint's /health
	// reports throttled workers (capacityFrom; in a file, health_capacity,
	// default true).
	HealthCapacity bool
}

// DefaultRunPodAPI is RunPod's endpoint API.
const DefaultRunPodAPI = dispatch.DefaultAPIURL

// DefaultStateFile is state_file's default.
const DefaultStateFile = "/var/lib/runpod-scaler/state.json"

// DefaultUnfitRetries is ScaleSetConfig.UnfitRetries' default.
const DefaultUnfitRetries = 2

// Config file limits: a configuration is a few hundred bytes.
const (
	maxConfigSize = 64 << 10
	maxScaleSets  = 100
	maxRunnersCap = 1000
)

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,44}$`)
	endpointRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	groupRE    = regexp.MustCompile(`^[^\x00-\x1f\x7f]{1,100}$`)
)

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "github_url", Required: true}, {Name: "runpod_api_url"}, {Name: "state_file"}, {Name: "listen"}, {Name: "check_interval"},
		{Name: "session_retry"}, {Name: "finish_grace"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "scale_set", LabelNames: []string{"name"}}},
}

var scaleSetSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "endpoint", Required: true}, {Name: "max_runners", Required: true}, {Name: "min_runners"}, {Name: "runner_group"},
		{Name: "labels"}, {Name: "idle_timeout"}, {Name: "job_timeout"}, {Name: "runner_user"}, {Name: "unfit_retries"},
		{Name: "health_capacity"},
	},
}

// ConfigError is a configuration that does not load; Error prints its
// diagnostics as variants.WriteDiagnostics does (file:line:col, a code
// frame).
type ConfigError struct {
	Files variants.Files
	Diags hcl.Diagnostics
}

func (e *ConfigError) Error() string { return variants.FormatDiagnostics(e.Files, e.Diags) }

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the configuration: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the configuration %s: %w", path, err)
	}
	if len(src) > maxConfigSize {
		return nil, fmt.Errorf("configuration %s: over %d KiB; a scaler configuration is a few hundred bytes", path, maxConfigSize>>10)
	}
	return ParseConfig(path, src)
}

// ParseConfig parses a configuration (name is for the diagnostics),
// collecting every error before it gives up.
func ParseConfig(name string, src []byte) (*Config, error) {
	p := hclparse.NewParser()
	file, diags := p.ParseHCL(src, name)
	if diags.HasErrors() {
		return nil, &ConfigError{p.Files(), diags}
	}
	content, diags := file.Body.Content(rootSchema)
	d := &decoder{}
	d.diags = diags
	cfg := d.root(content, file.Body)
	if d.diags.HasErrors() {
		return nil, &ConfigError{p.Files(), d.diags}
	}
	return cfg, nil
}

// decoder reads attributes, collecting diagnostics.
type decoder struct {
	diags    hcl.Diagnostics
	labelsAt []hcl.Range // each scale set's labels, in order (zero: none)
}

func (d *decoder) errorf(rng hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: rng.Ptr()})
}

// get decodes attribute name into target when it is set.
func (d *decoder) get(attrs hcl.Attributes, name string, target any) (hcl.Range, bool) {
	a, ok := attrs[name]
	if !ok {
		return hcl.Range{}, false
	}
	diags := gohcl.DecodeExpression(a.Expr, nil, target)
	d.diags = append(d.diags, diags...)
	return a.Expr.Range(), !diags.HasErrors()
}

func (d *decoder) duration(attrs hcl.Attributes, name, where string, lo, hi time.Duration, v *time.Duration) {
	var s string
	if rng, ok := d.get(attrs, name, &s); ok {
		dur, err := parseDuration(s, lo, hi)
		if err != nil {
			d.errorf(rng, "Invalid "+name, "%s%s", where, err)
			return
		}
		*v = dur
	}
}

func (d *decoder) root(content *hcl.BodyContent, body hcl.Body) *Config {
	cfg := &Config{RunPodAPI: DefaultRunPodAPI, StateFile: DefaultStateFile, CheckInterval: 15 * time.Second}
	attrs := content.Attributes
	if rng, ok := d.get(attrs, "github_url", &cfg.GitHubURL); ok {
		if err := checkGitHubURL(cfg.GitHubURL); err != nil {
			d.errorf(rng, "Invalid github_url", "%s", err)
		}
	}
	if rng, ok := d.get(attrs, "runpod_api_url", &cfg.RunPodAPI); ok {
		if u, err := url.Parse(cfg.RunPodAPI); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			d.errorf(rng, "Invalid runpod_api_url", "An http(s) URL like %s.", DefaultRunPodAPI)
		}
	}
	if rng, ok := d.get(attrs, "state_file", &cfg.StateFile); ok && !filepath.IsAbs(cfg.StateFile) {
		d.errorf(rng, "Invalid state_file", "An absolute path like %s (default); a relative one would depend on the "+
			"directory the scaler starts in, and a restart elsewhere would lose its runners.", DefaultStateFile)
	}
	if rng, ok := d.get(attrs, "listen", &cfg.Listen); ok {
		cfg.Warnings = append(cfg.Warnings, d.listen(rng, cfg.Listen)...)
	}
	d.duration(attrs, "check_interval", "", 100*time.Millisecond, time.Hour, &cfg.CheckInterval)
	d.duration(attrs, "session_retry", "", 100*time.Millisecond, time.Hour, &cfg.SessionRetry)
	d.duration(attrs, "finish_grace", "", time.Second, 24*time.Hour, &cfg.FinishGrace)
	switch n := len(content.Blocks); {
	case n == 0:
		d.errorf(body.MissingItemRange(), "No scale set", `Add a block like scale_set "runpod-gpu" { endpoint = "abc123" max_runners = 3 }.`)
	case n > maxScaleSets:
		d.errorf(content.Blocks[maxScaleSets].DefRange, "Too many scale sets", "%d scale sets; at most %d per scaler.", n, maxScaleSets)
		return cfg
	}
	seen := map[string]bool{}
	for _, b := range content.Blocks {
		sc := d.scaleSet(b)
		if seen[strings.ToLower(sc.Name)] {
			d.errorf(b.LabelRanges[0], "Duplicate scale set", "Scale set %q is defined twice (names are labels, case-insensitive).", sc.Name)
		}
		seen[strings.ToLower(sc.Name)] = true
		cfg.ScaleSets = append(cfg.ScaleSets, sc)
	}
	d.labels(content.Blocks, cfg.ScaleSets, seen)
	return cfg
}

// listen checks listen: host:port ("" : not served). A host other than
// loopback serves /metrics and /healthz (no credentials, but runner
// names and counts) to the network: a warning.
func (d *decoder) listen(rng hcl.Range, addr string) []string {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if _, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil {
		d.errorf(rng, "Invalid listen", "%s is not host:port, like 127.0.0.1:9102 (or :9102 for every interface).", secret.Preview(addr))
		return nil
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	return []string{fmt.Sprintf("listen %s is not loopback: /metrics and /healthz are served to the network "+
		"without authentication (they show no credential); firewall the port or listen on 127.0.0.1", addr)}
}

// labels refuses a scale set's label that is another scale set's name,
// or that it gives twice: a runs-on label must name one scale set.
func (d *decoder) labels(blocks hcl.Blocks, sets []ScaleSetConfig, names map[string]bool) {
	for i, sc := range sets {
		rng := cmp.Or(d.labelsAt[i], blocks[i].DefRange)
		mine := map[string]bool{}
		for _, l := range sc.Labels {
			l = strings.ToLower(l)
			switch {
			case names[l]:
				d.errorf(rng, "Label of another scale set", "Scale set %s: label %q is the name of a scale set "+
					"(names are labels, case-insensitive).", sc.Name, l)
			case mine[l]:
				d.errorf(rng, "Duplicate label", "Scale set %s: label %q is given twice (case-insensitive).", sc.Name, l)
			}
			mine[l] = true
		}
	}
}

func (d *decoder) scaleSet(b *hcl.Block) ScaleSetConfig {
	c := ScaleSetConfig{Name: b.Labels[0], RunnerGroup: "default", IdleTimeout: 10 * time.Minute, JobTimeout: 6 * time.Hour,
		UnfitRetries: DefaultUnfitRetries, HealthCapacity: true}
	where := fmt.Sprintf("Scale set %s: ", secret.Preview(c.Name))
	if !nameRE.MatchString(c.Name) {
		d.errorf(b.LabelRanges[0], "Invalid scale set name",
			"%sthe name is the runs-on label: 1 to 45 letters, digits, '.', '_' and '-', starting with a letter or digit.", where)
	}
	content, diags := b.Body.Content(scaleSetSchema)
	d.diags = append(d.diags, diags...)
	attrs := content.Attributes
	if rng, ok := d.get(attrs, "endpoint", &c.Endpoint); ok && !endpointRE.MatchString(c.Endpoint) {
		d.errorf(rng, "Invalid endpoint", "%s%s is not a RunPod endpoint id (letters, digits, '_' and '-').", where, secret.Preview(c.Endpoint))
	}
	if rng, ok := d.get(attrs, "runner_group", &c.RunnerGroup); ok && !groupRE.MatchString(c.RunnerGroup) {
		d.errorf(rng, "Invalid runner_group", "%sa runner group name of 1 to 100 printable characters.", where)
	}
	rng, ok := d.get(attrs, "labels", &c.Labels)
	d.labelsAt = append(d.labelsAt, rng)
	if ok {
		for _, l := range c.Labels {
			if !nameRE.MatchString(l) {
				d.errorf(rng, "Invalid label", "%slabel %s: 1 to 45 letters, digits, '.', '_' and '-'.", where, secret.Preview(l))
			}
		}
	}
	maxRng, maxOK := d.get(attrs, "max_runners", &c.MaxRunners)
	minRng, minOK := d.get(attrs, "min_runners", &c.MinRunners)
	switch {
	case maxOK && (c.MaxRunners < 1 || c.MaxRunners > maxRunnersCap):
		d.errorf(maxRng, "Invalid max_runners", "%smax_runners is %d; it must be 1 to %d.", where, c.MaxRunners, maxRunnersCap)
	case minOK && (c.MinRunners < 0 || c.MinRunners > c.MaxRunners):
		d.errorf(minRng, "Invalid min_runners", "%smin_runners is %d; it must be 0 to max_runners (%d).", where, c.MinRunners, c.MaxRunners)
	}
	d.duration(attrs, "idle_timeout", where, time.Second, 24*time.Hour, &c.IdleTimeout)
	d.duration(attrs, "job_timeout", where, time.Second, 6*24*time.Hour, &c.JobTimeout)
	if _, _, err := dispatch.Policy(c.IdleTimeout, c.JobTimeout); err != nil {
		d.errorf(b.DefRange, "Timeouts too long", "%s%s", where, err)
	}
	if rng, ok := d.get(attrs, "unfit_retries", &c.UnfitRetries); ok && (c.UnfitRetries < 0 || c.UnfitRetries > dispatch.MaxUnfitRetries) {
		d.errorf(rng, "Invalid unfit_retries", "%sunfit_retries is %d; it must be 0 to %d.", where, c.UnfitRetries, dispatch.MaxUnfitRetries)
	}
	d.get(attrs, "health_capacity", &c.HealthCapacity)
	if rng, ok := d.get(attrs, "runner_user", &c.RunnerUser); ok && c.RunnerUser != "runner" && c.RunnerUser != "root" {
		d.errorf(rng, "Invalid runner_user", `%srunner_user is "runner" or "root".`, where)
	}
	return c
}

// parseDuration reads "90s", "10m", "2h" or a number of seconds, within
// [lo, hi].
func parseDuration(s string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseFloat(s, 64)
		if nerr != nil {
			return 0, fmt.Errorf("%s is not a duration like 90s, 10m or 2h", secret.Preview(s))
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("%v is out of range: %v to %v", d, lo, hi)
	}
	return d, nil
}

// checkGitHubURL accepts an organisation, repository or enterprise URL.
func checkGitHubURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return errors.New("an https URL like https://github.com/my-org, https://github.com/owner/repo or https://github.com/enterprises/slug (or the same on your GitHub Enterprise Server)")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return fmt.Errorf("%s: the path must be an organisation, owner/repo or enterprises/slug", secret.Preview(u.Path))
	}
	return nil
}

// Secrets are the scaler's credentials. They come from the environment
// only, never from the configuration file, and never leave the scaler's
// host: RunPod gets a runner's JIT config, nothing else.
type Secrets struct {
	// A GitHub App installation (preferred) ...
	AppClientID       string
	AppInstallationID int64
	AppPrivateKey     secret.Value
	// ... or a personal access token.
	PAT       secret.Value
	RunPodKey secret.Value
}

// The environment variables Secrets come from.
const (
	EnvAppClientID     = "GITHUB_APP_CLIENT_ID" // or GITHUB_APP_ID
	EnvAppID           = "GITHUB_APP_ID"
	EnvAppInstallation = "GITHUB_APP_INSTALLATION_ID"
	EnvAppPrivateKey   = "GITHUB_APP_PRIVATE_KEY" // PEM, or GITHUB_APP_PRIVATE_KEY_FILE
	EnvAppKeyFile      = "GITHUB_APP_PRIVATE_KEY_FILE"
	EnvPAT             = "GITHUB_PAT" // or GITHUB_TOKEN
	EnvToken           = "GITHUB_TOKEN"
	EnvRunPodKey       = "RUNPOD_API_KEY"
)

// SecretsFromEnv reads the credentials. A GitHub App wins over a PAT when
// both are set; an App given in part is an error, not a fallback.
func SecretsFromEnv(getenv func(string) string) (Secrets, error) {
	var s Secrets
	var errs []error
	s.RunPodKey = secret.New(strings.TrimSpace(getenv(EnvRunPodKey)))
	if s.RunPodKey.Empty() {
		errs = append(errs, fmt.Errorf("no RunPod API key: set %s", EnvRunPodKey))
	}
	s.AppClientID = strings.TrimSpace(cmpOr(getenv(EnvAppClientID), getenv(EnvAppID)))
	inst := strings.TrimSpace(getenv(EnvAppInstallation))
	key := getenv(EnvAppPrivateKey)
	if f := getenv(EnvAppKeyFile); f != "" && key == "" {
		b, err := readSmall(f, 16<<10)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvAppKeyFile, err))
		}
		key = string(b)
	}
	key = strings.ReplaceAll(key, `\n`, "\n") // a PEM pasted into one line
	s.PAT = secret.New(strings.TrimSpace(cmpOr(getenv(EnvPAT), getenv(EnvToken))))
	switch {
	case s.AppClientID != "" || inst != "" || key != "":
		s.PAT = secret.Value{}
		id, err := strconv.ParseInt(inst, 10, 64)
		if s.AppClientID == "" || err != nil || id <= 0 || strings.TrimSpace(key) == "" {
			errs = append(errs, fmt.Errorf("a GitHub App needs %s (or %s), %s (a number) and %s (or %s)",
				EnvAppClientID, EnvAppID, EnvAppInstallation, EnvAppPrivateKey, EnvAppKeyFile))
		}
		s.AppInstallationID, s.AppPrivateKey = id, secret.New(key)
	case s.PAT.Empty():
		errs = append(errs, fmt.Errorf("no GitHub credential: set a GitHub App's %s, %s and %s (preferred), or %s",
			EnvAppClientID, EnvAppInstallation, EnvAppPrivateKey, EnvPAT))
	}
	return s, errors.Join(errs...)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("over %d KiB: not a private key", limit>>10)
	}
	return b, err
}
