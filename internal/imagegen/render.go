package imagegen

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runpod-workers/worker-github_runner/internal/render"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// DefaultDockerfileDir is where `imagegen render` writes by default; the
// rendered files are committed so reviews show what an HCL change does.
const DefaultDockerfileDir = "dockerfiles"

type renderFlags struct {
	out    string
	root   string
	noRoot bool
	check  bool
	noLint bool
}

// rootPath is where the root Dockerfile goes: --root, else beside the
// --out folder (dockerfiles/ -> ./Dockerfile).
func (rf *renderFlags) rootPath() string {
	if rf.root != "" {
		return rf.root
	}
	return filepath.Join(filepath.Dir(filepath.Clean(rf.out)), render.RootFileName)
}

func newRenderCommand(mf *matrixFlags) *cobra.Command {
	rf := &renderFlags{}
	cmd := &cobra.Command{
		Use:   "render [VARIANT...]",
		Short: "Write one Dockerfile per variant",
		Long: `render writes <variant>.Dockerfile for each variant into --out, linted with
BuildKit's Dockerfile checks (offline). Rendering all variants also removes
generated Dockerfiles of variants that no longer exist, and writes the
root Dockerfile (--root, default: Dockerfile beside the --out folder, so
dockerfiles/ gives ./Dockerfile): every variant as a stage, BUILD_TYPE
choosing one (default gpu), for 'docker build .' and the RunPod Hub.
Each Dockerfile builds from the repository root with BuildKit alone.

--check writes nothing and exits 1 when the files on disk differ from what
would be rendered, or when the linter warns: run it in CI.`,
		Example: `  imagegen render
  imagegen render --out build/dockerfiles gpu
  imagegen render --check`,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := mf.load(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			vs, err := selectVariants(m, args)
			if err != nil {
				return err
			}
			files, warnings, err := renderVariants(cmd, vs, !rf.noLint)
			if err != nil {
				return err
			}
			extra := map[string][]byte{}
			if len(args) == 0 && !rf.noRoot {
				root, n, err := renderRoot(cmd, vs, !rf.noLint)
				if err != nil {
					return err
				}
				extra[rf.rootPath()], warnings = root, warnings+n
			}
			if rf.check {
				return checkRendered(cmd, rf.out, files, len(args) == 0, warnings, extra)
			}
			return writeRendered(cmd, rf.out, files, len(args) == 0, extra)
		},
	}
	cmd.Flags().StringVar(&rf.out, "out", DefaultDockerfileDir, "directory to write the Dockerfiles to")
	cmd.Flags().StringVar(&rf.root, "root", "", "where the root Dockerfile (every variant) goes; default: Dockerfile beside the --out folder")
	cmd.Flags().BoolVar(&rf.noRoot, "no-root", false, "do not write or check the root Dockerfile")
	cmd.Flags().BoolVar(&rf.check, "check", false, "write nothing; exit 1 if the files on disk are stale or lint warns")
	cmd.Flags().BoolVar(&rf.noLint, "no-lint", false, "skip BuildKit's Dockerfile checks")
	return cmd
}

// renderVariants renders (and lints) every variant before anything is
// written, so a failure leaves the output folder as it was.
func renderVariants(cmd *cobra.Command, vs []*variants.Variant, lint bool) (map[string][]byte, int, error) {
	files := map[string][]byte{}
	warnings := 0
	for _, v := range vs {
		plan, err := render.Variant(v)
		if err != nil {
			return nil, 0, &ExitError{Code: ExitFailure, Err: err}
		}
		name := render.FileName(v)
		files[name] = plan.Dockerfile
		if !lint {
			continue
		}
		ws, err := render.Lint(cmd.Context(), plan.Dockerfile)
		if err != nil {
			return nil, 0, &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: %w", name, err)}
		}
		for _, w := range ws {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s:%d: lint warning: %s: %s\n", name, w.Line, w.Rule, w.Message)
		}
		warnings += len(ws)
	}
	return files, warnings, nil
}

// renderRoot renders (and lints) the root Dockerfile.
func renderRoot(cmd *cobra.Command, vs []*variants.Variant, lint bool) ([]byte, int, error) {
	root, err := render.Root(vs)
	if err != nil {
		return nil, 0, &ExitError{Code: ExitFailure, Err: err}
	}
	if !lint {
		return root, 0, nil
	}
	ws, err := render.Lint(cmd.Context(), root)
	if err != nil {
		return nil, 0, &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: %w", render.RootFileName, err)}
	}
	for _, w := range ws {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s:%d: lint warning: %s: %s\n", render.RootFileName, w.Line, w.Rule, w.Message)
	}
	return root, len(ws), nil
}

// writeRendered brings dir, and the extra files (by path), up to date,
// all or nothing (see commitFiles).
func writeRendered(cmd *cobra.Command, dir string, files map[string][]byte, all bool, extra map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("create output folder: %w", err)}
	}
	var changes []fileChange
	var unchanged []string
	for _, p := range targetPaths(dir, files, extra) {
		data := targetData(dir, files, extra, p)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
			unchanged = append(unchanged, p)
			continue
		}
		changes = append(changes, fileChange{path: p, data: data})
	}
	if all {
		stale, err := staleFiles(dir, files)
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
		for _, p := range stale {
			changes = append(changes, fileChange{path: p, remove: true})
		}
	}
	if err := commitFiles(changes); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	out := cmd.OutOrStdout()
	for _, p := range unchanged {
		fmt.Fprintf(out, "unchanged %s\n", p)
	}
	for _, c := range changes {
		if c.remove {
			fmt.Fprintf(out, "removed   %s (its variant is gone)\n", c.path)
		} else {
			fmt.Fprintf(out, "wrote     %s\n", c.path)
		}
	}
	return nil
}

func checkRendered(cmd *cobra.Command, dir string, files map[string][]byte, all bool, warnings int, extra map[string][]byte) error {
	var problems []string
	for _, p := range targetPaths(dir, files, extra) {
		data := targetData(dir, files, extra, p)
		old, err := os.ReadFile(p)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s is missing", p))
		case !bytes.Equal(old, data):
			problems = append(problems, fmt.Sprintf("%s is out of date (first difference at line %d)", p, firstDiffLine(old, data)))
		}
	}
	if all {
		stale, err := staleFiles(dir, files)
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
		for _, p := range stale {
			problems = append(problems, fmt.Sprintf("%s belongs to no variant", p))
		}
	}
	if warnings > 0 {
		problems = append(problems, fmt.Sprintf("the linter reported %d warning(s)", warnings))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", p)
		}
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("rendered Dockerfiles in %s are not up to date: run 'imagegen render'", dir)}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%d Dockerfile(s) in %s are up to date\n", len(files), dir)
	for _, p := range sortedNames(extra) {
		fmt.Fprintf(cmd.OutOrStdout(), "%s is up to date\n", p)
	}
	return nil
}

// targetPaths are the paths of the files in dir, then the extra ones.
func targetPaths(dir string, files, extra map[string][]byte) []string {
	var out []string
	for _, name := range sortedNames(files) {
		out = append(out, filepath.Join(dir, name))
	}
	return append(out, sortedNames(extra)...)
}

// targetData is the content for a path of targetPaths.
func targetData(dir string, files, extra map[string][]byte, p string) []byte {
	if b, ok := extra[p]; ok {
		return b
	}
	return files[filepath.Base(p)]
}

// staleFiles lists generated Dockerfiles in dir that no variant renders.
// Only files imagegen wrote (by their header) are considered.
func staleFiles(dir string, files map[string][]byte) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".Dockerfile") {
			continue
		}
		if _, ok := files[e.Name()]; ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err == nil && bytes.HasPrefix(b, []byte("# Generated by imagegen")) {
			out = append(out, p)
		}
	}
	return out, nil
}

func writeFileAtomic(p string, data []byte) error { return writeFileAtomicIf(p, data, nil) }

// writeFileAtomicIf replaces the file p with data: through a symlink (the
// link's target is written, the link kept), keeping the file's mode (0644
// for a new file), with a temporary file in the same folder synced before
// it is renamed over, and the folder synced after. unchanged, when set, is
// called just before the rename: its error leaves the file as it was.
func writeFileAtomicIf(p string, data []byte, unchanged func() error) error {
	target, err := filepath.EvalSymlinks(p)
	if errors.Is(err, fs.ErrNotExist) {
		target = p
	} else if err != nil {
		return err
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(target); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), ".imagegen-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, data, mode); err != nil {
		return err
	}
	if unchanged != nil {
		if err := unchanged(); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	return syncDir(filepath.Dir(target))
}

// writeSynced writes data to f, sets its mode, syncs and closes it.
func writeSynced(f *os.File, data []byte, mode fs.FileMode) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func firstDiffLine(a, b []byte) int {
	al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := 0; i < len(al) && i < len(bl); i++ {
		if !bytes.Equal(al[i], bl[i]) {
			return i + 1
		}
	}
	if len(al) < len(bl) {
		return len(al) + 1
	}
	return len(bl) + 1
}

func sortedNames(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
