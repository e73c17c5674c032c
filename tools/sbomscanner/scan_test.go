package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

const statusFixture = `Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 2.36-9+deb12u10
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: ../evil pkg
Status: install ok installed
Version: 1.0

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2025b-0+deb12u1
`

// writeFiles creates files (name -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// copyTestBinary puts this test's own executable (a Go binary with build
// information) at name under dir.
func copyTestBinary(t *testing.T, dir, name string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func purls(res scanResult) map[string][]pkg {
	m := map[string][]pkg{}
	for _, p := range res.Packages {
		m[p.PURL] = append(m[p.PURL], p)
	}
	return m
}

func TestScanListsDpkgPackagesAndGoModules(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"etc/os-release":       "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
		"var/lib/dpkg/status":  statusFixture,
		"usr/local/bin/script": "#!/bin/sh\necho not a binary\n",
	})
	copyTestBinary(t, root, "usr/local/bin/probe")
	os.Symlink("probe", filepath.Join(root, "usr/local/bin/probe-link"))
	os.Symlink("usr/local/bin", filepath.Join(root, "bin")) // merged /usr: walked once

	res, err := scan(root, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	got := purls(res)
	for _, want := range []string{"pkg:deb/debian/libc6@2.36-9+deb12u10?arch=amd64", "pkg:deb/debian/tzdata@2025b-0+deb12u1?arch=all"} {
		if len(got[want]) != 1 || got[want][0].Source != "/var/lib/dpkg/status" {
			t.Errorf("want %s from /var/lib/dpkg/status once, got %+v", want, got[want])
		}
	}
	for p := range got {
		if strings.Contains(p, "removed-pkg") || strings.Contains(p, "evil") {
			t.Errorf("listed %s: not installed or not a package name", p)
		}
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "1 stanzas without a valid package name") {
		t.Errorf("the malformed stanza is not reported: %q", res.Warnings)
	}
	mod := got["pkg:golang/github.com/runpod-workers/worker-github_runner"]
	if len(mod) != 1 || mod[0].Source != "/usr/local/bin/probe" {
		t.Errorf("want the main module once, from /usr/local/bin/probe (links not followed), got %+v", mod)
	}
	std := got["pkg:golang/stdlib@"+strings.TrimPrefix(runtime.Version(), "go")]
	if len(std) != 1 || std[0].Version != runtime.Version() || std[0].Parent == nil {
		t.Errorf("want the Go standard library %s, got %+v", runtime.Version(), std)
	}
}

func TestScanUsesUbuntuNamespace(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"run/os-release":      "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n",
		"var/lib/dpkg/status": statusFixture,
	})
	mkLink(t, "../run/os-release", filepath.Join(root, "etc/os-release")) // a link, as in Debian and Ubuntu
	res, err := scan(root, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(purls(res)["pkg:deb/ubuntu/libc6@2.36-9+deb12u10?arch=amd64"]) != 1 {
		t.Errorf("want pkg:deb/ubuntu/libc6, got %+v", res.Packages)
	}
}

func TestScanReadsDistrolessStatusD(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"var/lib/dpkg/status.d/base-files":         "Package: base-files\nArchitecture: amd64\nVersion: 12.4+deb12u10\n",
		"var/lib/dpkg/status.d/base-files.md5sums": "d41d8cd98f00b204e9800998ecf8427e  etc/debian_version\n",
	})
	res, err := scan(root, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Packages) != 1 || res.Packages[0].PURL != "pkg:deb/debian/base-files@12.4+deb12u10?arch=amd64" {
		t.Errorf("want base-files only, got %+v", res.Packages)
	}
}

// scanWithin fails the test if a scan takes longer than d: a hostile file
// system must not hang the build.
func scanWithin(t *testing.T, d time.Duration, root string, lim limits) scanResult {
	t.Helper()
	type out struct {
		res scanResult
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := scan(root, lim)
		ch <- out{res, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			t.Fatal(o.err)
		}
		return o.res
	case <-time.After(d):
		t.Fatalf("scan still running after %s", d)
	}
	return scanResult{}
}

func TestScanHostileFileSystems(t *testing.T) {
	small := defaultLimits
	small.StatusBytes, small.LineBytes, small.Packages, small.Entries, small.Depth = 4096, 256, 3, 40, 3
	smallStatus := defaultLimits
	smallStatus.StatusBytes = 4096
	tests := []struct {
		name    string
		setup   func(t *testing.T, root, outside string)
		lim     limits
		warning string // "" for none
		check   func(t *testing.T, res scanResult)
	}{
		{"status links outside the root (relative)", func(t *testing.T, root, outside string) {
			writeFiles(t, outside, map[string]string{"status": "Package: hostpkg\nStatus: install ok installed\nVersion: 1\n"})
			rel, _ := filepath.Rel(filepath.Join(root, "var/lib/dpkg"), filepath.Join(outside, "status"))
			mkLink(t, rel, filepath.Join(root, "var/lib/dpkg/status"))
		}, defaultLimits, `"/var/lib/dpkg/status" not read`, noPackages},
		{"status links outside the root (absolute)", func(t *testing.T, root, outside string) {
			writeFiles(t, outside, map[string]string{"status": "Package: hostpkg\nStatus: install ok installed\nVersion: 1\n"})
			mkLink(t, filepath.Join(outside, "status"), filepath.Join(root, "var/lib/dpkg/status"))
		}, defaultLimits, `"/var/lib/dpkg/status" not read`, noPackages},
		{"status is a symlink loop", func(t *testing.T, root, _ string) {
			mkLink(t, "status.a", filepath.Join(root, "var/lib/dpkg/status"))
			mkLink(t, "status", filepath.Join(root, "var/lib/dpkg/status.a"))
		}, defaultLimits, `"/var/lib/dpkg/status" not read`, noPackages},
		{"status is a FIFO", func(t *testing.T, root, _ string) {
			os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
			if err := syscall.Mkfifo(filepath.Join(root, "var/lib/dpkg/status"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, defaultLimits, "not a regular file", noPackages},
		{"a 1 GiB status file of one line", func(t *testing.T, root, _ string) {
			os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
			f, err := os.Create(filepath.Join(root, "var/lib/dpkg/status"))
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b")
			f.Truncate(1 << 30) // sparse: costs no disk
			f.Close()
		}, defaultLimits, "token too long", func(t *testing.T, res scanResult) {
			if len(res.Packages) != 1 || res.Packages[0].Name != "a" {
				t.Errorf("want the package before the long line, got %+v", res.Packages)
			}
		}},
		{"a status file over the size limit", func(t *testing.T, root, _ string) {
			var b strings.Builder
			for i := 0; b.Len() < 8192; i++ {
				b.WriteString("Package: p\nStatus: install ok installed\nVersion: 1\n\n")
			}
			writeFiles(t, root, map[string]string{"var/lib/dpkg/status": b.String()})
		}, smallStatus, "larger than 4096 bytes", func(t *testing.T, res scanResult) {
			if n := len(res.Packages); n == 0 || n > 4096/40 {
				t.Errorf("want the packages of the first 4096 bytes, got %d", n)
			}
		}},
		{"more packages than the limit", func(t *testing.T, root, _ string) {
			writeFiles(t, root, map[string]string{"var/lib/dpkg/status": strings.Repeat("Package: p\nStatus: install ok installed\nVersion: 1\n\n", 10)})
		}, small, "more than 3 packages", func(t *testing.T, res scanResult) {
			if len(res.Packages) != 3 {
				t.Errorf("want 3 packages, got %d", len(res.Packages))
			}
		}},
		{"folder links: loops and the host's root", func(t *testing.T, root, _ string) {
			os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755)
			mkLink(t, ".", filepath.Join(root, "usr/local/bin/loop"))
			mkLink(t, "/", filepath.Join(root, "usr/local/bin/host"))
			mkLink(t, "/usr/bin", filepath.Join(root, "usr/bin"))
		}, small, "", noPackages},
		{"deep folders", func(t *testing.T, root, _ string) {
			os.MkdirAll(filepath.Join(root, "opt/1/2/3/4/5/6/7/8"), 0o755)
		}, small, "deeper than 3 levels", nil},
		{"more warnings than the limit", func(t *testing.T, root, _ string) {
			for i := range 10 {
				os.MkdirAll(filepath.Join(root, "var/lib/dpkg/status.d", fmt.Sprint(i)), 0o755)
			}
		}, limits{StatusBytes: 4096, LineBytes: 256, StatusFiles: 100, Warnings: 3}, "more than 3 warnings: the rest are not listed", func(t *testing.T, res scanResult) {
			if len(res.Warnings) != 4 {
				t.Errorf("want 3 warnings and a last one saying so, got %q", res.Warnings)
			}
		}},
		{"more files than the limit", func(t *testing.T, root, _ string) {
			files := map[string]string{}
			for i := range 100 {
				files[filepath.Join("usr/bin", strings.Repeat("f", i+1))] = "x"
			}
			writeFiles(t, root, files)
		}, small, "more than 40 files", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			tc.setup(t, root, outside)
			res := scanWithin(t, 20*time.Second, root, tc.lim)
			w := strings.Join(res.Warnings, "\n")
			if tc.warning == "" && w != "" || !strings.Contains(w, tc.warning) {
				t.Errorf("warnings %q, want %q", w, tc.warning)
			}
			if len(w) > 4096 {
				t.Errorf("warnings are %d bytes: they must stay short", len(w))
			}
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
}

func noPackages(t *testing.T, res scanResult) {
	t.Helper()
	if len(res.Packages) != 0 {
		t.Errorf("want no packages, got %+v", res.Packages)
	}
}

func mkLink(t *testing.T, target, link string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(link), 0o755)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

var spdxID = regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`)

func TestDocumentIsConsistentSPDX(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"var/lib/dpkg/status": statusFixture})
	copyTestBinary(t, root, "usr/local/bin/probe")
	copyTestBinary(t, root, "opt/tool/probe2") // the same modules twice: distinct packages
	res, err := scan(root, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	doc := newDocument("sbom", res, created, "")
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.CreationInfo.Created != "2026-11-27T12:00:00Z" {
		t.Errorf("header: %+v", doc)
	}
	if len(doc.CreationInfo.Creators) != 1 || doc.CreationInfo.Creators[0] != "Tool: wgr-sbomscanner" ||
		!strings.Contains(doc.CreationInfo.Comment, "stand-in for docker/buildkit-syft-scanner") {
		t.Errorf("the document must name its tool honestly: %+v", doc.CreationInfo)
	}
	ids := map[string]bool{"SPDXRef-DOCUMENT": true}
	for _, p := range doc.Packages {
		if !spdxID.MatchString(p.SPDXID) || ids[p.SPDXID] {
			t.Errorf("bad or duplicate SPDXID %q", p.SPDXID)
		}
		ids[p.SPDXID] = true
	}
	if len(doc.Packages) != len(res.Packages)+1 {
		t.Errorf("%d packages in the document, %d found (+1 root)", len(doc.Packages), len(res.Packages))
	}
	describes := 0
	for _, r := range doc.Relationships {
		if !ids[r.Element] || !ids[r.Related] {
			t.Errorf("relationship to an unknown element: %+v", r)
		}
		if r.Type == "DESCRIBES" {
			describes++
		}
	}
	if describes != 1 {
		t.Errorf("want one DESCRIBES relationship, got %d", describes)
	}
	if again := newDocument("sbom", res, created, ""); again.DocumentNamespace != doc.DocumentNamespace {
		t.Errorf("the namespace is not stable: %s, %s", doc.DocumentNamespace, again.DocumentNamespace)
	}
}

func TestRunFollowsBuildKitsProtocol(t *testing.T) {
	dir := t.TempDir()
	core := filepath.Join(dir, "src/core/sbom")
	extras := filepath.Join(dir, "src/extras")
	writeFiles(t, core, map[string]string{"var/lib/dpkg/status": statusFixture})
	writeFiles(t, filepath.Join(extras, "sbom-build"), map[string]string{"var/lib/dpkg/status": "Package: gcc\nStatus: install ok installed\nVersion: 4:12.2.0-3\nArchitecture: amd64\n"})
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	env := map[string]string{
		"BUILDKIT_SCAN_SOURCE": core, "BUILDKIT_SCAN_DESTINATION": out,
		"BUILDKIT_SCAN_SOURCE_EXTRAS": extras, "SOURCE_DATE_EPOCH": "1764244800",
	}
	var stderr bytes.Buffer
	if err := run(func(k string) string { return env[k] }, nil, io.Discard, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	ents, _ := os.ReadDir(out)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "sbom-build.spdx.json,sbom.spdx.json" {
		t.Fatalf("destination holds %v, want sbom.spdx.json and sbom-build.spdx.json", names)
	}
	for name, purl := range map[string]string{
		"sbom.spdx.json":       "pkg:deb/debian/libc6@2.36-9+deb12u10?arch=amd64",
		"sbom-build.spdx.json": "pkg:deb/debian/gcc@4:12.2.0-3?arch=amd64",
	} {
		var st struct {
			Type          string `json:"_type"`
			PredicateType string `json:"predicateType"`
			Predicate     struct {
				SPDXVersion  string `json:"spdxVersion"`
				CreationInfo struct{ Created string }
				Packages     []struct {
					ExternalRefs []struct{ ReferenceLocator string }
				}
			}
		}
		b, _ := os.ReadFile(filepath.Join(out, name))
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != "https://spdx.dev/Document" ||
			st.Predicate.SPDXVersion != "SPDX-2.3" || st.Predicate.CreationInfo.Created != "2025-11-27T12:00:00Z" {
			t.Errorf("%s: not an in-toto SPDX 2.3 statement from SOURCE_DATE_EPOCH: %s", name, b[:min(len(b), 300)])
		}
		if !bytes.Contains(b, []byte(`"referenceLocator":"`+purl+`"`)) {
			t.Errorf("%s does not list %s", name, purl)
		}
	}
}

func TestRunWithoutExtrasAndWithoutEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	env := map[string]string{"BUILDKIT_SCAN_SOURCE": t.TempDir(), "BUILDKIT_SCAN_DESTINATION": out,
		"BUILDKIT_SCAN_SOURCE_EXTRAS": filepath.Join(dir, "absent")}
	if err := run(func(k string) string { return env[k] }, nil, io.Discard, io.Discard); err != nil {
		t.Errorf("an absent extras folder must not fail the scan: %v", err)
	}
	err := run(func(string) string { return "" }, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "BUILDKIT_SCAN_SOURCE") {
		t.Errorf("without the protocol's variables: %v, want a usage error naming them", err)
	}
	env = map[string]string{"BUILDKIT_SCAN_SOURCE": filepath.Join(dir, "missing"), "BUILDKIT_SCAN_DESTINATION": out}
	if err := run(func(k string) string { return env[k] }, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), `scan "missing"`) {
		t.Errorf("a missing source: %v, want an error naming it", err)
	}
}

func TestRunByHandPrintsTheStatement(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"var/lib/dpkg/status": statusFixture})
	var stdout bytes.Buffer
	if err := run(func(string) string { return "" }, []string{root}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), `"referenceLocator": "pkg:deb/debian/libc6@2.36-9+deb12u10?arch=amd64"`) {
		t.Errorf("stdout: %.300s", stdout.String())
	}
}

// A file or folder name is data from the image: printed or written into the
// document, it must not forge a log line of its own.
func TestWarningsQuotePaths(t *testing.T) {
	const evil = "x\nwgr-sbomscanner: all good"
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "var/lib/dpkg/status.d"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(root, "var/lib/dpkg/status.d", evil), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "usr/bin", evil, "a/b"), 0o755)

	lim := defaultLimits
	lim.Depth = 1
	res := scanWithin(t, 20*time.Second, root, lim)
	w := strings.Join(res.Warnings, "\n")
	for _, want := range []string{`"/var/lib/dpkg/status.d/x\nwgr-sbomscanner: all good"`, `"/usr/bin/x\nwgr-sbomscanner: all good/a"`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q do not name %s", w, want)
		}
	}

	var stdout, stderr bytes.Buffer
	if err := run(func(string) string { return "" }, []string{root}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	var st struct{ Predicate struct{ Comment string } }
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"stderr": stderr.String(), "the document's comment": st.Predicate.Comment} {
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "wgr-sbomscanner: all good") {
				t.Errorf("%s has a forged line: %q", what, text)
			}
		}
	}
}

// listenUnix makes a Unix socket file at p (a path too long for a socket
// address is fine: it is bound elsewhere, then moved).
func listenUnix(t *testing.T, p string) {
	t.Helper()
	short, err := os.MkdirTemp("", "s")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(short)
	l, err := net.Listen("unix", filepath.Join(short, "s"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	t.Cleanup(func() { l.Close() })
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.Rename(filepath.Join(short, "s"), p); err != nil {
		t.Fatal(err)
	}
}

// Opening a device can have effects (a tape rewinds, a terminal becomes
// the controlling one): only regular files are opened. Opening a socket
// fails with ENXIO, which shows whether it was tried.
func TestScanDoesNotOpenSpecialFiles(t *testing.T) {
	root := t.TempDir()
	listenUnix(t, filepath.Join(root, "var/lib/dpkg/status"))
	listenUnix(t, filepath.Join(root, "var/lib/dpkg/status.d/sock"))
	res := scanWithin(t, 20*time.Second, root, defaultLimits)
	w := strings.Join(res.Warnings, "\n")
	if strings.Contains(w, "no such device") || strings.Count(w, "not a regular file (socket)") != 2 {
		t.Errorf("warnings %q, want two sockets reported as not regular files, never opened", w)
	}
}

func TestWalkReportsDirectoryReadErrors(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"usr/bin/a": "x", "usr/bin/b": "x"})
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := newScanner(r, defaultLimits)
	s.readDir = func(f *os.File, n int) ([]fs.DirEntry, error) {
		ents, _ := f.ReadDir(1)
		return ents, syscall.EIO
	}
	s.goBinaries()
	if w := strings.Join(s.res.Warnings, "\n"); !strings.Contains(w, `"/usr/bin" not read to the end: input/output error`) {
		t.Errorf("warnings %q, want the read error of /usr/bin", w)
	}
}

// SPDX wants a namespace unique per document: two images with the same
// packages must not share one, nor two documents that differ in anything.
func TestDocumentNamespaceIsUniquePerDocument(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeFiles(t, a, map[string]string{"var/lib/dpkg/status": statusFixture})
	writeFiles(t, b, map[string]string{"var/lib/dpkg/status": statusFixture, "var/lib/dpkg/status.d/x": "Package: ../bad\nVersion: 1\n"})
	namespace := func(root, epoch string) string {
		t.Helper()
		var stdout bytes.Buffer
		if err := run(func(k string) string { return map[string]string{"SOURCE_DATE_EPOCH": epoch}[k] }, []string{root}, &stdout, io.Discard); err != nil {
			t.Fatal(err)
		}
		var st struct {
			Predicate struct{ DocumentNamespace string }
		}
		if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(st.Predicate.DocumentNamespace, "https://github.com/runpod-workers/worker-github_runner/sbomscanner/sbom-") {
			t.Errorf("namespace %q", st.Predicate.DocumentNamespace)
		}
		return st.Predicate.DocumentNamespace
	}
	if x, y := namespace(a, ""), namespace(a, ""); x == y {
		t.Errorf("two scans without SOURCE_DATE_EPOCH share the namespace %s", x)
	}
	if x, y := namespace(a, "1764244800"), namespace(a, "1764244800"); x != y {
		t.Errorf("with SOURCE_DATE_EPOCH the same file system gives two namespaces: %s, %s", x, y)
	}
	if x, y := namespace(a, "1764244800"), namespace(a, "1764244801"); x == y {
		t.Errorf("documents created at different times share the namespace %s", x)
	}
	if x, y := namespace(a, "1764244800"), namespace(b, "1764244800"); x == y {
		t.Errorf("documents with different comments share the namespace %s", x)
	}
}

func TestScanBoundsTheTotalOfStatusD(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{}
	for i := range 10 {
		files[fmt.Sprintf("var/lib/dpkg/status.d/p%d", i)] = fmt.Sprintf("Package: p%d\nVersion: 1\nDescription: x\n%s\n", i, strings.Repeat(" filler line\n", 75))
	}
	writeFiles(t, root, files)
	lim := defaultLimits
	lim.StatusBytes = 4096
	res := scanWithin(t, 20*time.Second, root, lim)
	if n := len(res.Packages); n == 0 || n > 5 {
		t.Errorf("%d packages from 10 files of ~1000 bytes, want at most the first 4096 bytes' worth", n)
	}
	if w := strings.Join(res.Warnings, "\n"); !strings.Contains(w, `"/var/lib/dpkg/status.d" holds more than 4096 bytes`) {
		t.Errorf("warnings %q, want the total limit reported", w)
	}
}
