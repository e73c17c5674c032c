// Package imagegen is the imagegen command line: it wires flags to the
// variants, render and build packages. cmd/imagegen only calls Main.
package imagegen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/runpod-workers/worker-github_runner/internal/registry"
	"github.com/runpod-workers/worker-github_runner/internal/render"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// Version is the module version imagegen was built from, read from the
// binary's build information: v1.2.3 for `go install ...@v1.2.3`, a
// pseudo-version (from the VCS stamp) for a build in a checkout, else dev.
func Version() string { return versionOf(debug.ReadBuildInfo()) }

func versionOf(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "dev"
	}
	return bi.Main.Version
}

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // invalid input or a failed operation
	ExitUsage   = 2 // wrong flags or arguments
)

// ExitError carries an exit code; Main prints its message (if any).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

func usageError(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// clip caps a value echoed in a message.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// matrixFlags are the flags every matrix-reading command shares.
type matrixFlags struct {
	files  []string
	vars   []string
	sets   []string
	noPins bool
}

// NoPinsEnv turns pins off as --no-pins does (1, true; 0, false or unset
// leave them on).
const NoPinsEnv = "IMAGEGEN_NO_PINS"

func (f *matrixFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringArrayVarP(&f.files, "file", "f", []string{"variants.hcl"}, "variants file; repeat to add files (their blocks form one matrix)")
	pf.StringArrayVar(&f.vars, "var", nil, "set a variable: NAME=VALUE (lists and maps as JSON); wins over the environment")
	pf.StringArrayVar(&f.sets, "set", nil, "override a field: VARIANT.FIELD=VALUE or += to append; VARIANT is a glob ("+strings.Join(variants.SettableFields(), ", ")+")")
	pf.BoolVar(&f.noPins, "no-pins", false, "ignore the file's pins: build on the tags (local stand-ins, mirrors); also "+NoPinsEnv+"=1")
}

// pinsOff says whether --no-pins or IMAGEGEN_NO_PINS turns pins off.
func (f *matrixFlags) pinsOff() (bool, error) {
	v, ok := os.LookupEnv(NoPinsEnv)
	if f.noPins || !ok || v == "" {
		return f.noPins, nil
	}
	off, err := strconv.ParseBool(v)
	if err != nil {
		return false, usageError("%s=%s: want 1 (build on the tags) or 0", NoPinsEnv, clip(strconv.Quote(v)))
	}
	return off, nil
}

// load resolves the matrix, printing diagnostics to stderr. Errors in the
// file end the command with exit 1. --no-pins (or IMAGEGEN_NO_PINS=1)
// leaves the file's pins unapplied.
func (f *matrixFlags) load(stderr io.Writer) (*variants.Matrix, error) {
	noPins, err := f.pinsOff()
	if err != nil {
		return nil, err
	}
	m, files, diags := variants.LoadFiles(f.files, variants.Options{Vars: f.vars, Sets: f.sets, NoPins: noPins})
	if !diags.HasErrors() {
		for _, v := range m.Variants {
			diags = append(diags, render.CheckSteps(v, files)...)
		}
	}
	if err := reportDiags(stderr, files, diags, strings.Join(f.files, ", ")); err != nil {
		return nil, err
	}
	return m, nil
}

// reportDiags prints diagnostics as every command does and turns errors
// among them into the command's exit: a usage error when only --var/--set
// syntax is wrong, else a failure. what names the files.
func reportDiags(stderr io.Writer, files variants.Files, diags hcl.Diagnostics, what string) error {
	if len(diags) > 0 {
		variants.WriteDiagnostics(stderr, files, diags)
	}
	if !diags.HasErrors() {
		return nil
	}
	code := ExitFailure
	if onlyFlagSyntax(diags) {
		code = ExitUsage
	}
	return &ExitError{Code: code, Err: fmt.Errorf("%s: %d error(s); nothing was done", what, len(diags.Errs()))}
}

// onlyFlagSyntax says whether every error is a malformed --var or --set
// (a usage error), rather than a mistake in a file or a value.
func onlyFlagSyntax(diags hcl.Diagnostics) bool {
	for _, d := range diags {
		if d.Severity == hcl.DiagError && (d.Subject != nil || (d.Summary != "Invalid --var" && d.Summary != "Invalid --set")) {
			return false
		}
	}
	return true
}

// selectVariants keeps the variants matching any of the glob patterns; every
// pattern must match something. No patterns keeps all.
func selectVariants(m *variants.Matrix, patterns []string) ([]*variants.Variant, error) {
	if len(patterns) == 0 {
		return m.Variants, nil
	}
	var names []string
	for _, v := range m.Variants {
		names = append(names, v.Name)
	}
	picked := map[string]bool{}
	for _, p := range patterns {
		n := 0
		for _, v := range m.Variants {
			ok, err := path.Match(p, v.Name)
			if err != nil {
				return nil, usageError("bad variant pattern %q: %v", p, err)
			}
			if ok {
				picked[v.Name] = true
				n++
			}
		}
		if n == 0 {
			return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("no variant matches %q; the matrix has: %s", p, strings.Join(names, ", "))}
		}
	}
	var out []*variants.Variant
	for _, v := range m.Variants {
		if picked[v.Name] {
			out = append(out, v)
		}
	}
	return out, nil
}

// NewRootCommand builds the imagegen command tree.
func NewRootCommand() *cobra.Command {
	mf := &matrixFlags{}
	root := &cobra.Command{
		Use:   "imagegen",
		Short: "Resolve, render, build and publish the worker-github_runner image matrix",
		Long: `imagegen reads the image matrix (variants.hcl), shows it resolved, renders one
Dockerfile per variant, and builds and pushes every tag.

Variables come from their defaults, then the environment (NAME=value), then
--var NAME=VALUE. Lists and maps are given as JSON.

Exit codes: 0 ok; 1 invalid input or a failure (a crash inside imagegen is
reported as a bug, with its stack); 2 a usage error (unknown command or flag,
wrong arguments, a malformed flag value).`,
		Example: `  imagegen list
  imagegen print gpu
  RELEASE=v1.0.0 imagegen print
  imagegen render --check
  imagegen -f variants.hcl -f my-variants.hcl --set 'gpu*.packages+=ffmpeg' render`,
		Version:       Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	mf.register(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w\nRun '%s --help' for usage.", err, cmd.CommandPath())}
	})
	root.AddCommand(newPrintCommand(mf), newListCommand(mf), newRenderCommand(mf), newBuildCommand(mf), newRunnerBumpCommand(mf))
	root.AddCommand(newPinCommand(mf))
	return root
}

// Main runs imagegen with args and returns the process exit code: 0 ok, 1
// a failure (including a bug: a panic is reported with its stack), 2 a
// usage error (flags and arguments only).
func Main(args []string, stdout, stderr io.Writer) int {
	return MainContext(context.Background(), args, stdout, stderr)
}

// MainContext is Main with a context: cancelling it (Run does on SIGINT and
// SIGTERM) stops the builds; a tagging pass still puts back what it moved
// (bounded, see registry.RollbackGrace) and a render still commits.
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "imagegen: internal error (a bug in imagegen, please report it): %v\n%s", r, debug.Stack())
			code = ExitFailure
		}
	}()
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := execute(ctx, root, args)
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if !errors.As(err, &ee) {
		ee = &ExitError{Code: ExitFailure, Err: err}
	}
	if ee.Err != nil {
		fmt.Fprintf(stderr, "imagegen: %v\n", ee.Err)
	}
	return ee.Code
}

// execute runs the command tree, marking cobra's own complaints about
// commands and arguments as usage errors (flag errors are marked by the
// flag error function).
func execute(ctx context.Context, root *cobra.Command, args []string) error {
	// cobra adds these inside Execute; Find must see them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd(args...)
	if !isCompletionRequest(args) {
		if _, _, err := root.Find(args); err != nil {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w\nRun 'imagegen --help' for usage.", err)}
		}
	}
	markArgErrors(root)
	return root.ExecuteContext(ctx)
}

// isCompletionRequest says whether args are a shell's completion request
// (cobra's hidden __complete command, which Find does not know).
func isCompletionRequest(args []string) bool {
	return len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd)
}

// markArgErrors makes every command's argument check return a usage error.
func markArgErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w\nRun '%s --help' for usage.", err, cmd.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markArgErrors(sub)
	}
}

// Run is Main on the process's arguments and standard streams. SIGINT and
// SIGTERM cancel the run instead of killing the process, so that a tagging
// pass can put back the tags it moved and a render finishes its renames;
// they stay caught until Run returns (SIGKILL still ends it at once).
func Run() int {
	ctx, stop := signalContext(os.Stderr)
	defer stop()
	return MainContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// signalContext is cancelled by SIGINT or SIGTERM, saying so on stderr.
func signalContext(stderr io.Writer) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	unsay := context.AfterFunc(ctx, func() {
		fmt.Fprintf(stderr, "imagegen: interrupted: stopping (a tagging pass puts back the tags it moved, within %s; a render finishes its renames)\n", registry.RollbackGrace)
	})
	return ctx, func() { unsay(); stop() }
}
