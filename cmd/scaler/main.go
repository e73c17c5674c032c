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
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stderr, os.Getenv)) }

func run(args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("scaler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "scaler.hcl", "the configuration file")
	check := fs.Bool("check", false, "check the configuration, that credentials are set (not their validity) and the state file, then exit")
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
		return checkOnly(*configPath, cfg, stderr)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))
	s, err := scaler.New(cfg, sec, log, scaler.Options{})
	if err != nil {
		log.Error("cannot start", "error", secret.CapLine(err.Error(), 2000))
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := s.Run(ctx); err != nil {
		log.Error("scaler failed", "error", secret.CapLine(err.Error(), 2000))
		return 1
	}
	return 0
}

// checkOnly reports what --check checked: the configuration, the
// credentials' presence (not their validity: that needs GitHub and
// RunPod), and the state file. It prints the configuration's warnings.
func checkOnly(path string, cfg *scaler.Config, stderr io.Writer) int {
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "scaler: warning: %s\n", w)
	}
	if err := scaler.CheckStateFile(cfg.StateFile); err != nil {
		fmt.Fprintf(stderr, "scaler: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "scaler: %s: configuration valid (%d scale sets); credentials present (not verified against GitHub "+
		"or RunPod); state file %s readable, its directory writable\n", path, len(cfg.ScaleSets), cfg.StateFile)
	return 0
}
