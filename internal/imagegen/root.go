// Package imagegen is the imagegen command line: it wires flags to the
// variants, render and build packages. cmd/imagegen only calls Main.
package imagegen

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// Version is stamped at build time with -ldflags "-X ...imagegen.Version=v1.2.3".
var Version = "dev"

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

// matrixFlags are the flags every matrix-reading command shares.
type matrixFlags struct {
	files []string
	vars  []string
	sets  []string
}

func (f *matrixFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringArrayVarP(&f.files, "file", "f", []string{"variants.hcl"}, "variants file; repeat to add files (their blocks form one matrix)")
	pf.StringArrayVar(&f.vars, "var", nil, "set a variable: NAME=VALUE (lists and maps as JSON); wins over the environment")
	pf.StringArrayVar(&f.sets, "set", nil, "override a field: VARIANT.FIELD=VALUE or += to append; VARIANT is a glob ("+strings.Join(variants.SettableFields(), ", ")+")")
}

// load resolves the matrix, printing diagnostics to stderr. Errors in the
// file end the command with exit 1.
func (f *matrixFlags) load(stderr io.Writer) (*variants.Matrix, error) {
	m, files, diags := variants.LoadFiles(f.files, variants.Options{Vars: f.vars, Sets: f.sets})
	if len(diags) > 0 {
		variants.WriteDiagnostics(stderr, files, diags)
	}
	if diags.HasErrors() {
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: %d error(s); nothing was done", strings.Join(f.files, ", "), len(diags.Errs()))}
	}
	return m, nil
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
--var NAME=VALUE. Lists and maps are given as JSON.`,
		Example: `  imagegen list
  imagegen print gpu
  RELEASE=v1.0.0 imagegen print
  imagegen render --check
  imagegen -f variants.hcl -f my-variants.hcl --set 'gpu*.packages+=ffmpeg' render`,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	mf.register(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w\nRun '%s --help' for usage.", err, cmd.CommandPath())}
	})
	root.AddCommand(newPrintCommand(mf), newListCommand(mf), newRenderCommand(mf), newBuildCommand(mf), newRunnerBumpCommand(mf))
	return root
}

// Main runs imagegen with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintf(stderr, "imagegen: %v\n", ee.Err)
		}
		return ee.Code
	}
	// Cobra's own errors (unknown command, wrong number of arguments) are
	// usage errors.
	fmt.Fprintf(stderr, "imagegen: %v\nRun 'imagegen --help' for usage.\n", err)
	return ExitUsage
}

// Run is Main on the process's arguments and standard streams.
func Run() int { return Main(os.Args[1:], os.Stdout, os.Stderr) }
