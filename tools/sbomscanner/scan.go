package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"syscall"
)

// pkg is one package found in a root file system.
type pkg struct {
	Kind    string // "deb" or "golang"
	Name    string
	Version string
	PURL    string
	Source  string // where it was found, as a path in the target ("/var/lib/dpkg/status")
	Parent  *pkg   // the Go main module a dependency belongs to
}

type scanResult struct {
	Packages []pkg
	Warnings []string // what was skipped or cut short, so a partial scan says so
}

// limits bound a scan of a hostile root file system: memory, time and the
// size of the document BuildKit stores (it refuses attestations over 80 MiB).
type limits struct {
	StatusBytes  int64 // one dpkg status file
	LineBytes    int   // one line of it
	StatusFiles  int   // files in var/lib/dpkg/status.d
	Packages     int   // packages in the document
	Entries      int   // directory entries visited looking for Go binaries
	Depth        int   // directory depth below a binary folder
	Binaries     int   // ELF files inspected
	BinaryBytes  int64 // larger files are not inspected
	ExtraTargets int   // entries of BUILDKIT_SCAN_SOURCE_EXTRAS
}

var defaultLimits = limits{
	StatusBytes:  64 << 20,
	LineBytes:    1 << 20,
	StatusFiles:  10000,
	Packages:     50000,
	Entries:      500000,
	Depth:        32,
	Binaries:     20000,
	BinaryBytes:  2 << 30,
	ExtraTargets: 256,
}

// binaryDirs are where images keep executables; they are walked (symbolic
// links are never followed) for Go binaries.
var binaryDirs = []string{
	"usr/local/bin", "usr/local/sbin", "usr/bin", "usr/sbin", "bin", "sbin",
	"usr/libexec", "usr/local/go/bin", "usr/local/go/pkg/tool", "opt", "kaniko",
}

type scanner struct {
	root     *os.Root
	lim      limits
	res      scanResult
	entries  int
	binaries int
	warned   map[string]bool
}

// scan lists the dpkg packages and Go modules of the root file system at
// dir. Every file is opened through an os.Root, so no symbolic link leads
// outside dir; what the limits cut short is listed in the warnings.
func scan(dir string, lim limits) (scanResult, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return scanResult{}, fmt.Errorf("open the file system to scan: %w", err)
	}
	defer r.Close()
	s := &scanner{root: r, lim: lim, warned: map[string]bool{}}
	s.dpkg()
	s.goBinaries()
	sortPackages(s.res.Packages)
	return s.res, nil
}

func (s *scanner) warn(key, format string, a ...any) {
	if s.warned[key] {
		return
	}
	s.warned[key] = true
	s.res.Warnings = append(s.res.Warnings, fmt.Sprintf(format, a...))
}

func (s *scanner) add(p pkg) bool {
	if len(s.res.Packages) >= s.lim.Packages {
		s.warn("packages", "more than %d packages: the rest are not listed", s.lim.Packages)
		return false
	}
	s.res.Packages = append(s.res.Packages, p)
	return true
}

// openRegular opens name for reading if it is a regular file. O_NONBLOCK
// keeps a FIFO planted in the file system from blocking the scan.
func (s *scanner) openRegular(name string) (*os.File, int64, error) {
	f, err := s.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file (%s)", name, st.Mode().Type())
	}
	return f, st.Size(), nil
}

// distro is the purl namespace of the file system's dpkg packages.
func (s *scanner) distro() string {
	f, _, err := s.openRegular("etc/os-release")
	if err != nil {
		f, _, err = s.openRegular("usr/lib/os-release")
	}
	if err != nil {
		return "debian"
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "ID="); ok && strings.Trim(v, `"'`) == "ubuntu" {
			return "ubuntu"
		}
	}
	return "debian"
}

func (s *scanner) dpkg() {
	distro := s.distro()
	s.statusFile("var/lib/dpkg/status", distro)
	d, err := s.root.Open("var/lib/dpkg/status.d") // distroless images: one file per package
	if err != nil {
		return
	}
	defer d.Close()
	names, err := d.Readdirnames(s.lim.StatusFiles + 1)
	if len(names) > s.lim.StatusFiles {
		s.warn("status.d", "/var/lib/dpkg/status.d has more than %d files: only %d are read", s.lim.StatusFiles, s.lim.StatusFiles)
		names = names[:s.lim.StatusFiles]
	} else if err != nil && !errors.Is(err, io.EOF) {
		s.warn("status.d-read", "/var/lib/dpkg/status.d: %v", err)
	}
	for _, n := range names {
		if !strings.HasSuffix(n, ".md5sums") {
			s.statusFile(path.Join("var/lib/dpkg/status.d", n), distro)
		}
	}
}

func (s *scanner) statusFile(name, distro string) {
	f, _, err := s.openRegular(name)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		s.warn(name, "/%s not read: %v", name, err)
		return
	}
	defer f.Close()
	if err := s.parseStatus(f, "/"+name, distro); err != nil {
		s.warn(name, "/%s: %v", name, err)
	}
}

var (
	debName    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{0,127}$`)
	debVersion = regexp.MustCompile(`^[A-Za-z0-9.+~:_-]{1,256}$`)
	debArch    = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
)

// parseStatus reads dpkg's status format: stanzas of "Field: value" lines
// separated by blank lines. Installed packages are listed; a stanza whose
// fields are not a Debian package name and version is skipped.
func (s *scanner) parseStatus(r io.Reader, source, distro string) error {
	lr := &io.LimitedReader{R: r, N: s.lim.StatusBytes + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 64<<10), s.lim.LineBytes)
	fields := map[string]string{}
	skipped, line := 0, 0
	flush := func() bool {
		defer clear(fields)
		if len(fields) == 0 || !installed(fields["Status"]) {
			return true
		}
		name, version, arch := fields["Package"], fields["Version"], fields["Architecture"]
		if !debName.MatchString(name) || !debVersion.MatchString(version) || (arch != "" && !debArch.MatchString(arch)) {
			skipped++
			return true
		}
		return s.add(pkg{Kind: "deb", Name: name, Version: version, Source: source,
			PURL: debPURL(distro, name, version, arch)})
	}
	for sc.Scan() {
		line++
		l := sc.Bytes()
		if len(bytes.TrimSpace(l)) == 0 {
			if !flush() {
				return nil
			}
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			continue // a continuation line (Description, Conffiles)
		}
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && len(fields) < 64 {
			switch string(k) {
			case "Package", "Status", "Version", "Architecture":
				fields[string(k)] = string(bytes.TrimSpace(v))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w (limit %d bytes); the packages after it are not listed", line+1, err, s.lim.LineBytes)
	}
	if lr.N == 0 {
		return fmt.Errorf("larger than %d bytes: the packages after that are not listed", s.lim.StatusBytes)
	}
	flush()
	if skipped > 0 {
		return fmt.Errorf("%d stanzas without a valid package name or version skipped", skipped)
	}
	return nil
}

// installed reads dpkg's "want flag status" triple; a stanza without one
// (distroless status.d) is installed.
func installed(status string) bool {
	if status == "" {
		return true
	}
	f := strings.Fields(status)
	return len(f) > 0 && f[len(f)-1] == "installed"
}

func (s *scanner) goBinaries() {
	for _, d := range binaryDirs {
		st, err := s.root.Lstat(d)
		if err != nil || !st.IsDir() {
			continue // absent, or a link (merged /usr: bin -> usr/bin) walked under its own name
		}
		if !s.walk(d) {
			return
		}
	}
}

// walk visits the regular files under dir, depth first, reading each
// directory in batches so a directory of millions of entries costs no more
// memory than a small one. It reports false once the entry limit is hit.
func (s *scanner) walk(dir string) bool {
	type item struct {
		path  string
		depth int
	}
	stack := []item{{dir, 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		f, err := s.root.Open(it.path)
		if err != nil {
			s.warn("open "+it.path, "/%s not read: %v", it.path, err)
			continue
		}
		for {
			ents, err := f.ReadDir(256)
			for _, e := range ents {
				if s.entries++; s.entries > s.lim.Entries {
					f.Close()
					s.warn("entries", "more than %d files under the binary folders: the rest are not inspected", s.lim.Entries)
					return false
				}
				p := path.Join(it.path, e.Name())
				switch {
				case e.IsDir() && it.depth < s.lim.Depth:
					stack = append(stack, item{p, it.depth + 1})
				case e.IsDir():
					s.warn("depth", "folders nested deeper than %d levels (/%s) are not inspected", s.lim.Depth, p)
				case e.Type().IsRegular():
					s.inspect(p)
				} // symbolic links, devices, FIFOs: never followed or opened
			}
			if err != nil {
				break
			}
		}
		f.Close()
	}
	return true
}

var elfMagic = []byte("\x7fELF")

// inspect lists the modules of a Go binary: its main module, the Go
// standard library it was built with, and its dependencies.
func (s *scanner) inspect(name string) {
	f, size, err := s.openRegular(name)
	if err != nil {
		return
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, elfMagic) {
		return
	}
	if size > s.lim.BinaryBytes {
		s.warn("big "+name, "/%s not inspected: larger than %d bytes", name, s.lim.BinaryBytes)
		return
	}
	if s.binaries++; s.binaries > s.lim.Binaries {
		s.warn("binaries", "more than %d executables: the rest are not inspected", s.lim.Binaries)
		return
	}
	bi, err := buildinfo.Read(f)
	if err != nil {
		return // not a Go binary
	}
	if len(s.res.Packages)+len(bi.Deps)+2 > s.lim.Packages {
		s.warn("packages", "more than %d packages: the rest are not listed", s.lim.Packages)
		return
	}
	src := "/" + name
	mainPath, mainVersion := bi.Main.Path, bi.Main.Version
	if mainPath == "" {
		mainPath = bi.Path // built from files, not a module
	}
	mod := pkg{Kind: "golang", Name: mainPath, Version: mainVersion, Source: src, PURL: goPURL(mainPath, mainVersion)}
	s.add(mod)
	s.add(pkg{Kind: "golang", Name: "stdlib", Version: bi.GoVersion, Source: src, Parent: &mod,
		PURL: goPURL("stdlib", strings.TrimPrefix(bi.GoVersion, "go"))})
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		s.add(pkg{Kind: "golang", Name: d.Path, Version: d.Version, Source: src, Parent: &mod, PURL: goPURL(d.Path, d.Version)})
	}
}
