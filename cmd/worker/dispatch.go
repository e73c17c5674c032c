package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/dispatch"
	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// runDispatch is `worker dispatch start|stop`: what the composite action
// runs on a GitHub-hosted runner. Secrets come from the environment
// (RUNPOD_API_KEY, GITHUB_PAT), never from flags, so they stay out of argv.
func runDispatch(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	usage := func() {
		fmt.Fprint(stderr, `Usage:
  worker dispatch start --endpoint ID --github-org ORG [--labels a,b] [--idle-timeout 5m] [--job-timeout 6h]
  worker dispatch stop  --endpoint ID --job-id ID

start submits a RunPod job that registers one ephemeral runner, labelled with a unique label
(printed as label=...) besides --labels; stop cancels the job unless it already ended.
Environment: RUNPOD_API_KEY (required), GITHUB_PAT (else the endpoint's own), GITHUB_OUTPUT
(outputs are appended there as key=value), RUNPOD_API_URL (default `+dispatch.DefaultAPIURL+`).
`)
	}
	if len(args) == 0 || (args[0] != "start" && args[0] != "stop") {
		usage()
		return 2
	}
	fs := flag.NewFlagSet("dispatch "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usage
	endpoint := fs.String("endpoint", getenv("RUNPOD_ENDPOINT"), "RunPod endpoint id")
	apiURL := fs.String("api-url", getenv("RUNPOD_API_URL"), "RunPod endpoint API base")
	org := fs.String("github-org", getenv(jobapi.EnvOrg), "organisation, owner/repo or enterprises/<slug>")
	labels := fs.String("labels", "", "extra runner labels, comma-separated")
	label := fs.String("label", "", "the unique label (default: runpod-<run id>-<attempt>-<random>)")
	group := fs.String("runner-group", "", "runner group name")
	ghAPI := fs.String("github-api-url", "", "GitHub Enterprise Server API URL")
	runnerUser := fs.String("runner-user", "", "runner (default) or root: jobs run as root, and can read the worker's secrets")
	idle := fs.Duration("idle-timeout", 5*time.Minute, "give up when no workflow job arrives in this time")
	job := fs.Duration("job-timeout", 6*time.Hour, "stop a workflow job that runs longer; the RunPod job's execution timeout is idle + job timeout + 10m, at most 7 days")
	ttl := fs.Duration("ttl", 0, "RunPod's ttl: how long the job may exist, queued and running, before RunPod drops it and its data (0: the execution timeout + 24h, at most 7 days)")
	jobID := fs.String("job-id", "", "the RunPod job to stop")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up on RunPod's API after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	c := &dispatch.Client{APIURL: *apiURL, Endpoint: *endpoint, APIKey: secret.New(getenv("RUNPOD_API_KEY"))}
	outputs := map[string]string{}
	switch args[0] {
	case "start":
		l := *label
		if l == "" {
			l = dispatch.UniqueLabel(getenv("GITHUB_RUN_ID"), getenv("GITHUB_RUN_ATTEMPT"))
		}
		all := []string{l}
		for _, x := range strings.Split(*labels, ",") {
			if x = strings.TrimSpace(x); x != "" {
				all = append(all, x)
			}
		}
		j, err := c.Start(ctx, dispatch.StartOptions{Scope: *org, PAT: secret.New(getenv(jobapi.EnvPAT)), Labels: all,
			RunnerGroup: *group, APIURL: *ghAPI, RunnerUser: *runnerUser, IdleTimeout: *idle, JobTimeout: *job, TTL: *ttl})
		if err != nil {
			fmt.Fprintln(stderr, "dispatch start:", err)
			return 1
		}
		fmt.Fprintf(stderr, "started RunPod job %s (%s); the runner has label %s\n", j.ID, j.Status, l)
		outputs["job-id"], outputs["label"], outputs["status"] = j.ID, l, string(j.Status)
	case "stop":
		if *jobID == "" {
			fmt.Fprintln(stderr, "dispatch stop: --job-id is required")
			return 2
		}
		j, cancelled, err := c.Stop(ctx, *jobID)
		if err != nil {
			fmt.Fprintln(stderr, "dispatch stop:", err)
			return 1
		}
		if cancelled {
			fmt.Fprintf(stderr, "cancelled RunPod job %s\n", *jobID)
		} else {
			fmt.Fprintf(stderr, "RunPod job %s already ended: %s %s\n", *jobID, j.Status, j.Error)
		}
		outputs["job-id"], outputs["status"] = *jobID, string(j.Status)
	}
	return writeOutputs(outputs, stdout, getenv("GITHUB_OUTPUT"), stderr)
}

func writeOutputs(outputs map[string]string, stdout io.Writer, path string, stderr io.Writer) int {
	var b strings.Builder
	for _, k := range []string{"job-id", "label", "status"} {
		if v, ok := outputs[k]; ok {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
	}
	if path == "" {
		fmt.Fprint(stdout, b.String())
		return 0
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(stderr, "GITHUB_OUTPUT:", err)
		return 1
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		fmt.Fprintln(stderr, "GITHUB_OUTPUT:", err)
		return 1
	}
	return 0
}
