// Command scaler runs RunPod runner scale sets: workflows say
// `runs-on: <scale set name>`, and GitHub's queue decides how many
// runners each scale set needs; the scaler starts each as a RunPod
// serverless job of a worker-github_runner endpoint (which needs no GitHub
// credential: it gets the runner's JIT config) and cleans up after it.
//
//	scaler --config scaler.hcl
//
// Credentials come from the environment only: a GitHub App
// (GITHUB_APP_CLIENT_ID, GITHUB_APP_INSTALLATION_ID, GITHUB_APP_PRIVATE_KEY
// or GITHUB_APP_PRIVATE_KEY_FILE; preferred) or GITHUB_PAT, and
// RUNPOD_API_KEY. SIGTERM closes the message sessions and leaves running
// runners alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/runpod-workers/worker-github_runner/internal/scaler"
)

var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stderr, os.Getenv)) }

func run(args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("scaler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "scaler.hcl", "the configuration file")
	check := fs.Bool("check", false, "check the configuration and credentials, then exit")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stderr, "scaler", version)
		return 0
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "scaler: --log-level %q: debug, info, warn or error\n", *level)
		return 2
	}
	cfg, err := scaler.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "scaler: %v\n", err)
		return 1
	}
	sec, err := scaler.SecretsFromEnv(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "scaler: %v\n", err)
		return 1
	}
	if *check {
		fmt.Fprintf(stderr, "scaler: %s: %d scale sets, credentials present\n", *configPath, len(cfg.ScaleSets))
		return 0
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))
	s, err := scaler.New(cfg, sec, log, scaler.Options{})
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := s.Run(ctx); err != nil {
		log.Error("scaler failed", "error", err)
		return 1
	}
	return 0
}
