// Command sbomscanner (wgr-sbomscanner) is a small offline stand-in for
// BuildKit's default SBOM generator, docker/buildkit-syft-scanner, which
// cannot be pulled on a machine without Docker Hub. It is not Syft: it lists
// only dpkg packages and the modules of Go binaries, and says so in every
// document it writes (creator "Tool: wgr-sbomscanner").
//
// Build and publish it as an image (the binary is the whole image):
//
//	mkdir -p ROOT/usr/bin
//	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o ROOT/usr/bin/wgr-sbomscanner ./tools/sbomscanner
//	tar --owner=0 --group=0 -C ROOT -cf sbomscanner.tar usr
//	go run ./tools/devenv push-tar --tar sbomscanner.tar --entrypoint /usr/bin/wgr-sbomscanner \
//	    --ref 127.0.0.1:5000/docker/buildkit-syft-scanner:stable-1
//
// Entrypoint: /usr/bin/wgr-sbomscanner, no arguments, no other files.
// BuildKit runs the generator for its build platform (the worker's first
// platform), not the target platform, so a linux/amd64 buildkitd needs a
// linux/amd64 image even for an arm64 build. A buildkitd whose docker.io
// mirror is the local registry then uses it for `attest:sbom=` (bake's and
// buildx's --sbom=true) without naming a generator.
//
// The protocol (BuildKit's docs/attestations/sbom-protocol.md): BuildKit
// mounts the target's root file system read-only at BUILDKIT_SCAN_SOURCE,
// other stages' file systems under BUILDKIT_SCAN_SOURCE_EXTRAS (optional),
// and collects every file of BUILDKIT_SCAN_DESTINATION: one in-toto
// statement per target, predicate type https://spdx.dev/Document, named
// <target>.spdx.json, the predicate an SPDX 2.3 JSON document. BuildKit
// fills in the statement's subject (the image).
//
// Run by hand, `wgr-sbomscanner DIR` prints the statement for DIR.
//
// The file system is untrusted: files are opened through an os.Root (no
// symbolic link leads outside it), only regular files are opened, and every
// read is bounded (see limits); what a limit cut short is written into the
// document's comment and to stderr, every name from the file system quoted
// (Go syntax) so none can forge a line. A Go module whose path or version
// is not valid (golang.org/x/mod) is skipped with such a warning; one
// replaced by a local directory is listed under its own path and version,
// with a package comment naming the directory.
//
// documentNamespace is a digest of the whole document plus a random UUID
// per run, so two images with the same packages get distinct namespaces;
// with SOURCE_DATE_EPOCH set, the digest alone (a reproducible document).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Getenv, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wgr-sbomscanner:", err)
		os.Exit(1)
	}
}

func run(getenv func(string) string, args []string, stdout, stderr io.Writer) error {
	src, dst := getenv("BUILDKIT_SCAN_SOURCE"), getenv("BUILDKIT_SCAN_DESTINATION")
	created, scanID := creationTime(getenv("SOURCE_DATE_EPOCH"))
	if src == "" && dst == "" && len(args) == 1 && !strings.HasPrefix(args[0], "-") {
		st, err := scanStatement(args[0], "sbom", created, scanID, stderr)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	if src == "" || dst == "" || len(args) > 0 {
		return errors.New("usage: BuildKit sets BUILDKIT_SCAN_SOURCE and BUILDKIT_SCAN_DESTINATION " +
			"(see BuildKit's SBOM scanning protocol); by hand: wgr-sbomscanner DIR")
	}
	if err := writeScan(src, dst, created, scanID, stderr); err != nil {
		return err
	}
	return scanExtras(getenv("BUILDKIT_SCAN_SOURCE_EXTRAS"), dst, created, scanID, stderr)
}

// scanExtras scans each file system in dir (other build stages); a dir that
// is unset or absent means there are none.
func scanExtras(dir, dst string, created time.Time, scanID string, stderr io.Writer) error {
	if dir == "" {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read BUILDKIT_SCAN_SOURCE_EXTRAS: %w", err)
	}
	if len(ents) > defaultLimits.ExtraTargets {
		fmt.Fprintf(stderr, "wgr-sbomscanner: %d extra targets; only the first %d are scanned\n", len(ents), defaultLimits.ExtraTargets)
		ents = ents[:defaultLimits.ExtraTargets]
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := writeScan(filepath.Join(dir, e.Name()), dst, created, scanID, stderr); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeScan scans src and writes <basename of src>.spdx.json into dst.
func writeScan(src, dst string, created time.Time, scanID string, stderr io.Writer) error {
	name := filepath.Base(filepath.Clean(src))
	if name == "." || name == string(filepath.Separator) {
		name = "sbom"
	}
	st, err := scanStatement(src, name, created, scanID, stderr)
	if err != nil {
		return err
	}
	out := filepath.Join(dst, name+".spdx.json")
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write the SBOM: %w", err)
	}
	if err := json.NewEncoder(f).Encode(st); err != nil {
		f.Close()
		return fmt.Errorf("write %q: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %q: %w", out, err)
	}
	fmt.Fprintf(stderr, "wgr-sbomscanner: %q: %d packages -> %q\n", name, len(st.Predicate.Packages)-1, out)
	return nil
}

// scanStatement scans src; its warnings (file system names in them
// quoted) go to stderr, one line each, the target's name quoted too.
func scanStatement(src, name string, created time.Time, scanID string, stderr io.Writer) (statement, error) {
	res, err := scan(src, defaultLimits)
	if err != nil {
		return statement{}, fmt.Errorf("scan %q: %w", name, err)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "wgr-sbomscanner: %q: %s\n", name, w)
	}
	return statement{
		Type:          inTotoStatementV1,
		PredicateType: predicateSPDX,
		Subject:       []any{},
		Predicate:     newDocument(name, res, created, scanID),
	}, nil
}

// creationTime honours SOURCE_DATE_EPOCH for reproducible documents: then
// the scan has no identity of its own (""), and the document's namespace
// depends on its content only. Otherwise each scan gets a random UUID.
func creationTime(epoch string) (time.Time, string) {
	if n, err := strconv.ParseInt(epoch, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0).UTC(), ""
	}
	return time.Now().UTC(), newScanID()
}
