// Command worker is the RunPod serverless worker of worker-github_runner:
// the container's entrypoint. For each RunPod job it registers an ephemeral
// GitHub Actions runner, lets it run one workflow job and removes it.
//
// Without RunPod's environment it runs locally, as the Python SDK does:
// --test_input JSON (or a test_input.json in the working directory) runs one
// job; --rp_serve_api serves a local copy of the endpoint API.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/runpod-workers/worker-github_runner/internal/jobhandler"
	"github.com/runpod-workers/worker-github_runner/internal/runpod"
)

// version is stamped by imagegen with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) > 0 && args[0] == "dispatch" {
		return runDispatch(args[1:], os.Stdout, os.Stderr, os.Getenv)
	}
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: worker [flags]

The RunPod serverless worker of worker-github_runner. On RunPod (RUNPOD_WEBHOOK_GET_JOB set)
it takes jobs until the platform stops it; each job registers an ephemeral GitHub Actions
runner that runs one workflow job.

From a GitHub workflow (what the composite action runs):
  worker dispatch start|stop ...                                start or stop a RunPod runner job

Locally:
  worker --test_input '{"input": {"github_org": "my-org"}}'   run one job, print the result
  worker --rp_serve_api --rp_api_port 8000                      serve /run, /runsync, /status/{id}, ...

Flags:
`)
		fs.PrintDefaults()
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	echo := fs.Bool("echo", false, "use a trivial echo handler instead of the GitHub runner (protocol testing)")
	testInput := fs.String("test_input", "", "run one job with this JSON ({\"input\": {...}}) and exit 0 on success, 1 on failure")
	serve := fs.Bool("rp_serve_api", false, "serve a local RunPod endpoint API")
	host := fs.String("rp_api_host", "localhost", "host for --rp_serve_api")
	port := fs.Int("rp_api_port", 8000, "port for --rp_serve_api")
	concurrency := fs.Int("rp_api_concurrency", 1, "jobs run at once by --rp_serve_api")
	logLevel := fs.String("rp_log_level", "", "log level: debug, info, warn, error (default RUNPOD_LOG_LEVEL or info)")
	refresh := fs.Bool("refresh_worker", true, "ask RunPod to replace the container after each job and exit (as the seed does)")
	grace := fs.Duration("grace", runpod.DefaultGrace, "on SIGTERM, time for the held job to stop its runner (up to 45 s), remove it and post its result")
	finish := fs.Duration("shutdown-finish", 0, "on SIGTERM, let running jobs run on this long before they are cancelled and get --grace\n(default: WORKER_SHUTDOWN_FINISH, else 0: cancel at once); RunPod's grace must exceed it + --grace")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	finishSet := flagSet(fs, "shutdown-finish")
	if *finish < 0 {
		fmt.Fprintf(os.Stderr, "worker: --shutdown-finish %v is negative: give a duration such as 90s, or 0\n", *finish)
		return 2
	}
	if *showVersion {
		fmt.Println("worker", version)
		return 0
	}

	cfg, err := runpod.ConfigFromEnv(envWithout(finishSet, "WORKER_SHUTDOWN_FINISH"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	if finishSet {
		cfg.ShutdownFinish = *finish // the flag wins over WORKER_SHUTDOWN_FINISH
	}
	level := cfg.LogLevel
	if *logLevel != "" {
		level = *logLevel
	}
	log := runpod.NewLogger(os.Stderr, cfg.JSONLogs, level)
	for _, w := range jobhandler.StartupWarnings(os.Getenv) {
		log.Warn("WARNING: " + w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	handler := newHandler(*echo, cfg.PodID, *grace, log)

	switch {
	case *testInput != "":
		return runpod.RunTestInput(ctx, handler, []byte(*testInput), os.Stdout, log)
	case *serve:
		if err := runpod.NewAPIServer(handler, *concurrency, log).Serve(ctx, *host, *port); err != nil {
			log.Error("local API failed", "error", err)
			return 1
		}
		return 0
	case cfg.OnPlatform():
		if jobhandler.SudoOn(os.Getenv) && !*refresh {
			log.Error("RUNNER_SUDO needs --refresh_worker (the default): a job that may use sudo can leave root processes behind for the next job in this container")
			return 1
		}
		defer startSweep(ctx, handler, log)()
		o := runpod.Options{Config: cfg, Handler: handler, Logger: log, Refresh: *refresh, Grace: *grace, Version: version}
		if h, ok := handler.(*jobhandler.Handler); ok {
			o.StartupCheck = h.StartupCheck // fitness: an unfit host takes no job and exits 1
		}
		w, err := runpod.NewJobLoop(o)
		if err != nil {
			log.Error("cannot start", "error", err)
			return 1
		}
		if err := w.Run(ctx); err != nil {
			log.Error("worker failed", "error", err)
			return 1
		}
		return 0
	}
	if b, err := os.ReadFile("test_input.json"); err == nil {
		return runpod.RunTestInput(ctx, handler, b, os.Stdout, log)
	}
	fmt.Fprintln(os.Stderr, "worker: not on RunPod (RUNPOD_WEBHOOK_GET_JOB is not set) and no test input: give --test_input, a test_input.json, or --rp_serve_api")
	return 1
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// envWithout is os.Getenv, except that it hides the variable name when
// hide is true (a flag overrides it, so a malformed value is no error).
func envWithout(hide bool, name string) func(string) string {
	return func(k string) string {
		if hide && k == name {
			return ""
		}
		return os.Getenv(k)
	}
}
