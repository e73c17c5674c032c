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
	"slices"
	"strconv"
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
	Note    string // the SPDX package comment, if any
}

type scanResult struct {
	Packages []pkg
	Warnings []string // what was skipped or cut short, so a partial scan says so
}

// limits bound a scan of a hostile root file system: memory, time and the
// size of the document BuildKit stores (it refuses attestations over 80 MiB).
type limits struct {
	StatusBytes  int64 // one dpkg status file, and all of status.d together
	LineBytes    int   // one line of it
	StatusFiles  int   // files in var/lib/dpkg/status.d
	Packages     int   // packages in the document
	Entries      int   // directory entries visited looking for Go binaries
	Depth        int   // directory depth below a binary folder
	Binaries     int   // ELF files inspected
	BinaryBytes  int64 // larger files are not inspected
	ExtraTargets int   // entries of BUILDKIT_SCAN_SOURCE_EXTRAS
	Warnings     int   // warnings listed
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
	Warnings:     100,
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
	readDir  func(f *os.File, n int) ([]fs.DirEntry, error) // (*os.File).ReadDir; tests fake errors
}

func newScanner(r *os.Root, lim limits) *scanner {
	return &scanner{root: r, lim: lim, warned: map[string]bool{}, readDir: (*os.File).ReadDir}
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
	s := newScanner(r, lim)
	s.dpkg()
	s.goBinaries()
	sortPackages(s.res.Packages)
	return s.res, nil
}

// warn records a warning once per key. Paths and other strings from the
// file system go in quoted (quote), so none can forge a line of the log or
// of the document's comment.
func (s *scanner) warn(key, format string, a ...any) {
	if s.warned[key] {
		return
	}
	s.warned[key] = true
	switch n := len(s.res.Warnings); {
	case n < s.lim.Warnings:
		s.res.Warnings = append(s.res.Warnings, fmt.Sprintf(format, a...))
	case n == s.lim.Warnings:
		s.res.Warnings = append(s.res.Warnings, fmt.Sprintf("more than %d warnings: the rest are not listed", s.lim.Warnings))
	}
}

// quote is a name from the scanned file system as it goes into a warning
// ("/" prefixed for a path in it): Go-quoted, control characters escaped.
// Names longer than 1 KiB are cut.
func quote(name string) string {
	if len(name) > 1024 {
		return strconv.Quote(name[:1024]) + "..."
	}
	return strconv.Quote(name)
}

// cause is err without the path an *fs.PathError repeats unquoted.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (s *scanner) add(p pkg) bool {
	if len(s.res.Packages) >= s.lim.Packages {
		s.warn("packages", "more than %d packages: the rest are not listed", s.lim.Packages)
		return false
	}
	s.res.Packages = append(s.res.Packages, p)
	return true
}

// openRegular opens name for reading if it is a regular file; the error
// does not repeat name. Its type is checked before it is opened (opening a
// device can have effects) and again after (it may have been replaced in
// between); O_NONBLOCK keeps a FIFO swapped in from blocking the scan.
// Symbolic links are followed inside the root (/etc/os-release is one).
func (s *scanner) openRegular(name string) (*os.File, int64, error) {
	st, err := s.root.Stat(name)
	if err != nil {
		return nil, 0, cause(err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, notRegular(st.Mode())
	}
	f, err := s.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, cause(err)
	}
	if st, err = f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, 0, cause(err)
		}
		return nil, 0, notRegular(st.Mode())
	}
	return f, st.Size(), nil
}

func notRegular(m fs.FileMode) error {
	kind := "special file"
	switch {
	case m&fs.ModeDir != 0:
		kind = "directory"
	case m&fs.ModeNamedPipe != 0:
		kind = "named pipe"
	case m&fs.ModeSocket != 0:
		kind = "socket"
	case m&fs.ModeCharDevice != 0:
		kind = "character device"
	case m&fs.ModeDevice != 0:
		kind = "block device"
	}
	return fmt.Errorf("not a regular file (%s)", kind)
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
	if _, err := s.statusFile("var/lib/dpkg/status", distro, s.lim.StatusBytes); errors.Is(err, errStatusCut) {
		s.warn("status", "\"/var/lib/dpkg/status\": larger than %d bytes: the packages after that are not listed", s.lim.StatusBytes)
	}
	s.statusD(distro)
}

// statusD reads the files of var/lib/dpkg/status.d (distroless images: one
// per package) in name order, StatusBytes of them in total.
func (s *scanner) statusD(distro string) {
	const dir = "var/lib/dpkg/status.d"
	d, err := s.root.Open(dir)
	if err != nil {
		return
	}
	names, err := d.Readdirnames(s.lim.StatusFiles + 1)
	d.Close()
	if len(names) > s.lim.StatusFiles {
		s.warn("status.d", "\"/%s\" has more than %d files: only %d are read", dir, s.lim.StatusFiles, s.lim.StatusFiles)
		names = names[:s.lim.StatusFiles]
	} else if err != nil && !errors.Is(err, io.EOF) {
		s.warn("status.d-read", "\"/%s\" not read to the end: %v", dir, cause(err))
	}
	slices.Sort(names)
	budget := s.lim.StatusBytes
	for _, n := range names {
		if strings.HasSuffix(n, ".md5sums") {
			continue
		}
		if budget <= 0 {
			s.warn("status.d-total", "\"/%s\" holds more than %d bytes: the files from %s on are not read", dir, s.lim.StatusBytes, quote(n))
			return
		}
		read, err := s.statusFile(path.Join(dir, n), distro, budget)
		if budget -= read; errors.Is(err, errStatusCut) {
			s.warn("status.d-total", "\"/%s\" holds more than %d bytes: the packages after that (in %s) are not listed", dir, s.lim.StatusBytes, quote(n))
			return
		}
	}
}

// errStatusCut: a status file was read up to its limit, not to its end.
var errStatusCut = errors.New("status file cut short")

// statusFile lists the packages of a status file, reading at most max
// bytes. It warns of every problem but a cut (errStatusCut: the caller
// knows which limit it set), and returns the bytes read.
func (s *scanner) statusFile(name, distro string, max int64) (int64, error) {
	f, _, err := s.openRegular(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		s.warn(name, "%s not read: %v", quote("/"+name), err)
		return 0, nil
	}
	defer f.Close()
	read, err := s.parseStatus(f, "/"+name, distro, max)
	if err != nil && !errors.Is(err, errStatusCut) {
		s.warn(name, "%s: %v", quote("/"+name), err)
	}
	return read, err
}

var (
	debName    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{0,127}$`)
	debVersion = regexp.MustCompile(`^[A-Za-z0-9.+~:_-]{1,256}$`)
	debArch    = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
)

// parseStatus reads dpkg's status format: stanzas of "Field: value" lines
// separated by blank lines. Installed packages are listed; a stanza whose
// fields are not a Debian package name and version is skipped. It reads at
// most max bytes (errStatusCut if there are more), and returns how many.
func (s *scanner) parseStatus(r io.Reader, source, distro string, max int64) (read int64, err error) {
	lr := &io.LimitedReader{R: r, N: max + 1}
	defer func() { read = min(max, max+1-lr.N) }()
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
				return 0, nil
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
		return 0, fmt.Errorf("line %d: %w (limit %d bytes); the packages after it are not listed", line+1, err, s.lim.LineBytes)
	}
	if lr.N == 0 {
		return 0, errStatusCut
	}
	flush()
	if skipped > 0 {
		return 0, fmt.Errorf("%d stanzas without a valid package name or version skipped", skipped)
	}
	return 0, nil
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
	stack := []walkItem{{dir, 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var ok bool
		if stack, ok = s.walkDir(it, stack); !ok {
			return false
		}
	}
	return true
}

type walkItem struct {
	path  string
	depth int
}

// walkDir inspects the files of one directory and pushes its folders onto
// stack; a directory that cannot be read to its end is reported.
func (s *scanner) walkDir(it walkItem, stack []walkItem) ([]walkItem, bool) {
	f, err := s.root.Open(it.path)
	if err != nil {
		s.warn("open "+it.path, "%s not read: %v", quote("/"+it.path), cause(err))
		return stack, true
	}
	defer f.Close()
	for {
		ents, err := s.readDir(f, 256)
		for _, e := range ents {
			if s.entries++; s.entries > s.lim.Entries {
				s.warn("entries", "more than %d files under the binary folders: the rest are not inspected", s.lim.Entries)
				return stack, false
			}
			p := path.Join(it.path, e.Name())
			switch {
			case e.IsDir() && it.depth < s.lim.Depth:
				stack = append(stack, walkItem{p, it.depth + 1})
			case e.IsDir():
				s.warn("depth", "folders nested deeper than %d levels (%s) are not inspected", s.lim.Depth, quote("/"+p))
			case e.Type().IsRegular():
				s.inspect(p)
			} // symbolic links, devices, FIFOs: never followed or opened
		}
		if errors.Is(err, io.EOF) {
			return stack, true
		}
		if err != nil {
			s.warn("read "+it.path, "%s not read to the end: %v", quote("/"+it.path), cause(err))
			return stack, true
		}
	}
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
		s.warn("big "+name, "%s not inspected: larger than %d bytes", quote("/"+name), s.lim.BinaryBytes)
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
	s.goModules(bi, "/"+name)
}
