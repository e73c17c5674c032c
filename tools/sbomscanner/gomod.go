package main

import (
	"debug/buildinfo"
	"fmt"
	"go/version"
	"runtime/debug"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// goModules lists what the build information of the Go binary at src
// names: its main module, the standard library and the dependencies.
//
// Build information is data from the image. A module whose path is not a
// module path (module.CheckPath) or whose version is not a semantic version
// is skipped with a warning, as a malformed dpkg stanza is, so the document
// holds only valid SPDX names and purls. A binary without a valid main
// module (built from files: "command-line-arguments") still lists its
// standard library and dependencies, contained in the target directly.
func (s *scanner) goModules(bi *buildinfo.BuildInfo, src string) {
	var main *pkg
	mainPath, mainVersion := bi.Main.Path, bi.Main.Version
	if mainPath == "" {
		mainPath = bi.Path // a GOPATH build: its package path
	}
	if err := checkModule(mainPath, mainVersion); err != nil {
		s.warn("main "+src, "%s: a Go binary without a valid main module (%v): its other modules are listed without it", quote(src), err)
	} else {
		m := pkg{Kind: "golang", Name: mainPath, Version: mainVersion, Source: src, PURL: goPURL(mainPath, mainVersion)}
		main = &m
		s.add(m)
	}
	if v, _, _ := strings.Cut(bi.GoVersion, " "); version.IsValid(v) { // "go1.26.8 X:experiment"
		s.add(pkg{Kind: "golang", Name: "stdlib", Version: v, Source: src, Parent: main,
			PURL: goPURL("stdlib", strings.TrimPrefix(v, "go"))})
	} else {
		s.warn("go "+src, "%s: Go version %s is not valid: the standard library is not listed", quote(src), quote(bi.GoVersion))
	}
	skipped, first := 0, ""
	for _, d := range bi.Deps {
		p, err := goDependency(d, src, main)
		if err != nil {
			if skipped++; skipped == 1 {
				first = err.Error()
			}
			continue
		}
		s.add(p)
	}
	if skipped > 0 {
		s.warn("deps "+src, "%s: %d Go modules skipped, the first: %s", quote(src), skipped, first)
	}
}

// goDependency is the package for a dependency d of the main module. A
// module replaced by another is listed as the replacement; one replaced by
// a local directory keeps its own path and version (what the build was
// meant to use; the directory's code has neither), noted in a comment.
func goDependency(d *debug.Module, src string, main *pkg) (pkg, error) {
	mod, note := d, ""
	if r := d.Replace; r != nil {
		if modfile.IsDirectoryPath(r.Path) {
			note = "built with this module replaced by the local directory " + quote(r.Path)
		} else {
			mod = r
		}
	}
	if err := checkModule(mod.Path, mod.Version); err != nil {
		return pkg{}, fmt.Errorf("module %s", err)
	}
	return pkg{Kind: "golang", Name: mod.Path, Version: mod.Version, Source: src, Parent: main, Note: note,
		PURL: goPURL(mod.Path, mod.Version)}, nil
}

// checkModule accepts a module path and a semantic version, "(devel)" (a
// build from a work tree) or none.
func checkModule(path, version string) error {
	if module.CheckPath(path) != nil {
		return fmt.Errorf("%s: not a module path", quote(path))
	}
	if version != "" && version != "(devel)" && !semver.IsValid(version) {
		return fmt.Errorf("%s version %s: not a semantic version", quote(path), quote(version))
	}
	return nil
}
