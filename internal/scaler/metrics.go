package scaler

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// The metrics, in Prometheus' text format (written by hand: a few gauges
// and counters need no client library).
var metricDefs = map[string][2]string{
	"runpod_scaler_desired_runners":         {"gauge", "Runners the scale set wants: min_runners + assigned jobs, at most the capacity."},
	"runpod_scaler_capacity":                {"gauge", "The scale set's capacity (X-ScaleSetMaxCapacity): max_runners, or less while the endpoint's /health reports throttled workers."},
	"runpod_scaler_assigned_jobs":           {"gauge", "Jobs GitHub assigned to the scale set (statistics.totalAssignedJobs)."},
	"runpod_scaler_running_jobs":            {"gauge", "Jobs running on the scale set's runners (statistics.totalRunningJobs)."},
	"runpod_scaler_runners":                 {"gauge", "Runners the scaler started, by state: starting, idle, busy, finishing."},
	"runpod_scaler_runpod_jobs":             {"gauge", "RunPod jobs of live runners, by the status last seen."},
	"runpod_scaler_session":                 {"gauge", "1 while the scaler holds the scale set's message session."},
	"runpod_scaler_runners_started_total":   {"counter", "Runners started: a JIT config minted and a RunPod job submitted."},
	"runpod_scaler_jobs_started_total":      {"counter", "JobStarted messages."},
	"runpod_scaler_jobs_completed_total":    {"counter", "JobCompleted messages, by result."},
	"runpod_scaler_api_errors_total":        {"counter", "Failed calls, by API (github, runpod, state: the state file) and operation."},
	"runpod_scaler_session_conflicts_total": {"counter", "Sessions refused because another scaler holds one (GitHub's 409)."},
	"runpod_scaler_runner_failures_total":   {"counter", "Runners whose RunPod job failed before they got a job, not on an unfit worker: each holds the scale set's start of runners (backoff)."},
	"runpod_scaler_orphans_removed_total":   {"counter", "Orphaned runners removed: this scale set's runners GitHub listed that the scaler did not start or know (another scaler's), idle for longer than the idle timeout."},
	"runpod_scaler_unfit_total":             {"counter", "RunPod jobs that failed on an unfit worker before their runner started, by action: resubmitted (same JIT config), removed (unfit retries spent)."},
}

// metrics holds the values; a series is a name and label pairs.
type metrics struct {
	mu   sync.Mutex
	vals map[string]map[string]float64 // name -> labels -> value
}

func newMetrics() *metrics { return &metrics{vals: map[string]map[string]float64{}} }

func labelString(kv []string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		v := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(kv[i+1])
		parts = append(parts, fmt.Sprintf(`%s="%s"`, kv[i], v))
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (m *metrics) series(name string) map[string]float64 {
	if _, ok := metricDefs[name]; !ok {
		panic("undefined metric " + name)
	}
	s := m.vals[name]
	if s == nil {
		s = map[string]float64{}
		m.vals[name] = s
	}
	return s
}

// set sets a gauge.
func (m *metrics) set(name string, v float64, labels ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.series(name)[labelString(labels)] = v
}

// add adds to a counter.
func (m *metrics) add(name string, v float64, labels ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.series(name)[labelString(labels)] += v
}

// reset drops a gauge's series whose labels contain match (a scale set's
// runner states before they are set again).
func (m *metrics) reset(name, match string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.series(name) {
		if strings.Contains(k, match) {
			delete(m.vals[name], k)
		}
	}
}

// get returns a value (tests).
func (m *metrics) get(name string, labels ...string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vals[name][labelString(labels)]
}

// write prints every metric in the text exposition format.
func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for n := range metricDefs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		def := metricDefs[n]
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", n, def[1], n, def[0])
		var keys []string
		for k := range m.vals[n] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s%s %g\n", n, k, m.vals[n][k])
		}
	}
}

func (m *metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	m.write(w)
}
