package imagegen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runpod-workers/worker-github_runner/internal/pin"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

type pinFlags struct {
	check   bool
	prune   bool
	mirrors []string
	timeout time.Duration
}

func newPinCommand(mf *matrixFlags) *cobra.Command {
	pf := &pinFlags{}
	cmd := &cobra.Command{
		Use:   "pin",
		Short: "Pin the base, Go, Kaniko and SBOM generator images of variants.hcl to their registries' digests",
		Long: `pin looks up, in its registry, the digest every image reference the builds pull
points at now (each variant's base, the golang and kaniko images, the SBOM
generator of a variant attesting type=sbom, BuildKit's default
docker/buildkit-syft-scanner:stable-1 unless it names one; for a multi-arch tag
the index's digest) and writes them into the variants file's top-level pins map,
keyed by the reference as the matrix resolves it:

  pins = {
    "ubuntu:24.04" = "sha256:..."
  }

Builds then use ubuntu:24.04@sha256:..., so a tag moved upstream changes nothing
until the next pin (imagegen --no-pins, or IMAGEGEN_NO_PINS=1, builds on the
tags). Only the entries of the pins attribute change (it is created at the end
of the file when missing); every other byte and comment stays. A reference
written with a digest is left alone.

The matrix is resolved with the variables given (--var, --set, the
environment), as a build would be: pin adds or updates a pin for every
reference that matrix pulls. It never removes one: a pin no build of that
matrix pulls (the SBOM scanner of release builds, when pinning the dev matrix;
CUDA 12.6.3's base, when pinning with CUDA_VERSION=12.8.1) is kept, with a
note on stderr. --prune removes those pins, each named. Release builds alone
pull the SBOM scanner: pin their matrix too (imagegen --var RELEASE=v0.0.0 pin).
Credentials come from the Docker config (anonymous otherwise).

--check writes nothing and exits 1 when a pin is stale (the registry has another
digest now) or missing, one line each: run it in CI. An unused pin is a note,
not a failure: it changes no build. Registry errors name the reference and the
registry asked; nothing is written after one, nor when the file changed while
pin ran.

--mirror REGISTRY=HOST[:PORT][/PATH] looks that registry's references up at
another (a local mirror), keyed as written: with docker.io=127.0.0.1:5000,
ubuntu:24.04 is looked up as 127.0.0.1:5000/library/ubuntu:24.04.`,
		Example: `  imagegen pin
  imagegen pin --check
  imagegen pin --mirror docker.io=127.0.0.1:5000 --mirror gcr.io=127.0.0.1:5000
  # the release matrix: the dev one's images and the SBOM scanner
  imagegen --var RELEASE=v0.0.0 pin
  # also pin what CUDA 12.8.1 builds pull
  imagegen -f my-variants.hcl --var CUDA_VERSION=12.8.1 pin
  # remove the pins no build of the default matrix pulls
  imagegen pin --prune`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(mf.files) != 1 {
				return usageError("pin rewrites one file: give exactly one -f")
			}
			if pf.check && pf.prune {
				return usageError("--prune removes pins and --check writes nothing: give one of them")
			}
			r := &pin.Resolver{Mirrors: pin.Mirrors{}, Timeout: pf.timeout}
			for i, m := range pf.mirrors {
				if err := r.Mirrors.Set(m); err != nil {
					return usageError("--mirror #%d: %v", i+1, err)
				}
			}
			return runPin(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), mf, pf, r)
		},
	}
	cmd.Flags().BoolVar(&pf.check, "check", false, "write nothing; exit 1 when a pin is stale or missing")
	cmd.Flags().BoolVar(&pf.prune, "prune", false, "remove the pins no build of this matrix (as the variables given resolve it) pulls")
	cmd.Flags().StringArrayVar(&pf.mirrors, "mirror", nil, "look a registry's references up at another: REGISTRY=HOST[:PORT][/PATH] (repeatable)")
	cmd.Flags().DurationVar(&pf.timeout, "timeout", pin.DefaultTimeout, "bound on looking up one reference, retries included")
	return cmd
}

func runPin(ctx context.Context, stdout, stderr io.Writer, mf *matrixFlags, pf *pinFlags, r *pin.Resolver) error {
	file := mf.files[0]
	in, err := pinInputs(stderr, mf)
	if err != nil {
		return err
	}
	results := r.ResolveAll(ctx, in.refs)
	digests := make([]string, len(results))
	var failed []string
	for i, res := range results {
		if res.Err != nil {
			failed = append(failed, res.Err.Error())
		}
		digests[i] = res.Digest
	}
	if len(failed) > 0 {
		fmt.Fprintln(stderr, strings.Join(failed, "\n"))
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: %d of %d image references could not be looked up; nothing was written", file, len(failed), len(in.refs))}
	}
	entries := pin.Compare(in.refs, digests, in.pins)
	if !pf.prune {
		for _, e := range entries {
			if n := e.Note(); n != "" {
				fmt.Fprintln(stderr, "note: "+n)
			}
		}
	}
	if pf.check {
		return pinCheck(stdout, file, entries)
	}
	return pinWrite(stdout, in, entries, pf.prune)
}

// pinInput is what pin works on.
type pinInput struct {
	src  variants.Source
	pins variants.Pins
	// refs are the unpinned references the matrix, as resolved with the
	// variables given, pulls.
	refs []string
}

// pinInputs reads the file, its pins and the unpinned references its
// builds pull, printing the file's diagnostics as every command does.
func pinInputs(stderr io.Writer, mf *matrixFlags) (*pinInput, error) {
	file := mf.files[0]
	m, files, diags := variants.LoadFiles(mf.files, variants.Options{Vars: mf.vars, Sets: mf.sets, NoPins: true})
	if err := reportDiags(stderr, files, diags, file); err != nil {
		return nil, err
	}
	in := &pinInput{src: variants.Source{Name: file, Data: files[file].Bytes}, refs: variants.ImageRefs(m)}
	in.pins, diags = variants.FilePins(in.src)
	if diags.HasErrors() {
		variants.WriteDiagnostics(stderr, files, diags)
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: the pins do not read; nothing was done", file)}
	}
	return in, nil
}

func pinCheck(w io.Writer, file string, entries []pin.Entry) error {
	bad := 0
	for _, e := range entries {
		if p := e.Problem(); p != "" {
			fmt.Fprintln(w, p)
			bad++
		}
	}
	pulled := pulledCount(entries)
	if bad > 0 {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: %d of %d image references stale or missing: run imagegen pin", file, bad, pulled)}
	}
	fmt.Fprintf(w, "%s: all %d image references pinned and current\n", file, pulled)
	return nil
}

// pulledCount is how many of the entries the matrix pulls.
func pulledCount(entries []pin.Entry) int {
	n := 0
	for _, e := range entries {
		if e.State != pin.Unused {
			n++
		}
	}
	return n
}

func pinWrite(w io.Writer, in *pinInput, entries []pin.Entry, prune bool) error {
	file := in.src.Name
	out, err := variants.WritePins(in.src, pin.Table(entries, prune))
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	changed := 0
	for _, e := range entries {
		if e.State == pin.Unused && !prune {
			continue
		}
		if c := e.Change(); c != "" {
			fmt.Fprintln(w, c)
			changed++
		}
	}
	if changed == 0 || bytes.Equal(out, in.src.Data) {
		fmt.Fprintf(w, "%s: all %d pins current\n", file, pulledCount(entries))
		return nil
	}
	if err := writeFileAtomicIf(file, out, unchangedSince(file, in.src.Data)); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	fmt.Fprintf(w, "%s: %d pin(s) written\n", file, changed)
	return nil
}

// unchangedSince checks, just before pin replaces the file, that it still
// holds what pin read: an edit made during the lookups is not overwritten.
func unchangedSince(file string, read []byte) func() error {
	return func() error {
		now, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if !bytes.Equal(now, read) {
			return fmt.Errorf("%s changed while pin ran; nothing written (run imagegen pin again)", file)
		}
		return nil
	}
}
