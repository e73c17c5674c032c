// Package runpod is a RunPod serverless worker in Go: it takes jobs from the
// platform, runs a Handler for each, keeps the platform's heartbeat going,
// honours cancellation and shutdown, and posts every result. It knows
// nothing of GitHub, so other workers can reuse it. The protocol follows
// the official Python SDK (runpod-python 1.12), fixing its known faults.
package runpod

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// SDKVersion is the runpod-python version whose protocol this follows; it is
// sent as runpod_version with pings.
const SDKVersion = "1.12.0"

// Config is the worker's view of the platform, read from the environment.
type Config struct {
	TakeURL   string // RUNPOD_WEBHOOK_GET_JOB
	DoneURL   string // RUNPOD_WEBHOOK_POST_OUTPUT
	StreamURL string // RUNPOD_WEBHOOK_POST_STREAM or RUNPOD_WEBHOOK_JOB_STREAM
	PingURL   string // RUNPOD_WEBHOOK_PING
	APIKey    secret.Value
	PodID     string
	Hostname  string // RUNPOD_POD_HOSTNAME: the host, in an unfit job's error
	// PingInterval is RUNPOD_PING_INTERVAL (milliseconds), at least 1 s.
	PingInterval time.Duration
	JSONLogs     bool   // RUNPOD_ENDPOINT_ID is set
	LogLevel     string // RUNPOD_LOG_LEVEL
	// ShutdownFinish is WORKER_SHUTDOWN_FINISH (a duration, default 0): how
	// long held jobs may run on after SIGTERM before they are cancelled
	// (Options.ShutdownFinish).
	ShutdownFinish time.Duration
}

// OnPlatform reports whether the worker runs on RunPod (a take URL is set).
func (c *Config) OnPlatform() bool { return c.TakeURL != "" }

// ConfigFromEnv reads the RunPod variables through getenv (nil: os.Getenv).
func ConfigFromEnv(getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := &Config{
		TakeURL:   getenv("RUNPOD_WEBHOOK_GET_JOB"),
		DoneURL:   getenv("RUNPOD_WEBHOOK_POST_OUTPUT"),
		StreamURL: getenv("RUNPOD_WEBHOOK_POST_STREAM"),
		PingURL:   getenv("RUNPOD_WEBHOOK_PING"),
		APIKey:    secret.New(getenv("RUNPOD_AI_API_KEY")),
		PodID:     getenv("RUNPOD_POD_ID"),
		Hostname:  getenv("RUNPOD_POD_HOSTNAME"),
		JSONLogs:  getenv("RUNPOD_ENDPOINT_ID") != "",
		LogLevel:  getenv("RUNPOD_LOG_LEVEL"),
	}
	if c.StreamURL == "" {
		c.StreamURL = getenv("RUNPOD_WEBHOOK_JOB_STREAM")
	}
	if c.PodID == "" {
		c.PodID = randomID()
	}
	c.PingInterval = 10 * time.Second
	if v := getenv("RUNPOD_PING_INTERVAL"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("RUNPOD_PING_INTERVAL=%q is not a number of milliseconds", v)
		}
		c.PingInterval = max(time.Duration(ms)*time.Millisecond, time.Second)
	}
	if v := getenv("WORKER_SHUTDOWN_FINISH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("WORKER_SHUTDOWN_FINISH=%.40q is not a duration such as 90s or 10m", v)
		}
		c.ShutdownFinish = d
	}
	if c.TakeURL != "" {
		if c.DoneURL == "" {
			return nil, errors.New("RUNPOD_WEBHOOK_GET_JOB is set but RUNPOD_WEBHOOK_POST_OUTPUT is not")
		}
		for name, u := range map[string]string{"RUNPOD_WEBHOOK_GET_JOB": c.TakeURL, "RUNPOD_WEBHOOK_POST_OUTPUT": c.DoneURL, "RUNPOD_WEBHOOK_POST_STREAM": c.StreamURL, "RUNPOD_WEBHOOK_PING": c.PingURL} {
			if u == "" {
				continue
			}
			if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") {
				return nil, fmt.Errorf("%s is not an http(s) URL", name)
			}
		}
	}
	return c, nil
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// takeURL is the job-take URL with the worker id filled in.
func (c *Config) takeURL(inProgress bool) string {
	u := strings.NewReplacer("$ID", c.PodID, "$RUNPOD_POD_ID", c.PodID).Replace(c.TakeURL)
	flag := "0"
	if inProgress {
		flag = "1"
	}
	return addQuery(u, "job_in_progress", flag)
}

// stopURL is the job-stop long poll, derived from the take URL; empty when
// the take URL has no /job-take/ to replace.
func (c *Config) stopURL() string {
	if !strings.Contains(c.TakeURL, "/job-take/") {
		return ""
	}
	u := strings.Replace(c.TakeURL, "/job-take/", "/job-stop/", 1)
	return strings.NewReplacer("$ID", c.PodID, "$RUNPOD_POD_ID", c.PodID).Replace(u)
}

// jobURL fills a done or stream URL: the worker id, then the job id.
func jobURL(tmpl, podID, jobID string, stream bool) string {
	u := strings.ReplaceAll(tmpl, "$RUNPOD_POD_ID", podID)
	u = strings.ReplaceAll(u, "$ID", url.PathEscape(jobID))
	return addQuery(u, "isStream", strconv.FormatBool(stream))
}

func (c *Config) pingURL(jobIDs []string) string {
	u := strings.NewReplacer("$ID", c.PodID, "$RUNPOD_POD_ID", c.PodID).Replace(c.PingURL)
	if len(jobIDs) > 0 {
		u = addQuery(u, "job_id", strings.Join(jobIDs, ","))
	}
	return addQuery(u, "runpod_version", SDKVersion)
}

// addQuery appends k=v with '&' when the URL already has a query, else '?'.
func addQuery(u, k, v string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + url.QueryEscape(k) + "=" + url.QueryEscape(v)
}
