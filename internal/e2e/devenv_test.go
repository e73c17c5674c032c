package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/build/attesttest"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The tool binaries a fresh cache may borrow from the running devenv's cache
// (they take minutes to build); everything else starts empty.
var seededTools = []string{"buildkitd", "buildctl", "executor", "buildkit.version", "kaniko.version"}

// TestDevenvUpOnAFreshCache runs the README's first commands as a new user
// would, beside the running devenv: scripts/devenv up against a brand-new
// cache folder (only the tool binaries seeded), on loopback ports and a
// socket of its own; scripts/devenv build cpu through it; then
// scripts/devenv down, after which nothing it started may be left. Its
// binfmt_misc is an empty folder: arm64 emulation cannot be had there, so
// up says so and carries on with linux/amd64 only (which also spares a
// new cache the arm64 debootstrap).
func TestDevenvUpOnAFreshCache(t *testing.T) {
	needDevenv(t)
	running := runningPids(t)
	noBinfmt := t.TempDir()
	fresh := newFreshDevenv(t, "WGR_BINFMT_MISC="+noBinfmt)
	if got := dirNames(t, fresh.cache); strings.Join(got, ",") != "bin" {
		t.Fatalf("the fresh cache holds %v before up, want only bin", got)
	}

	out := fresh.run(t, 10*time.Minute, "up")
	t.Logf("fresh-cache up (tools seeded):\n%s", tail(out, 15))
	env, err := readEnvFile(filepath.Join(fresh.cache, "local.env"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "arm64: emulation not available (no binfmt_misc on " + noBinfmt + "); carrying on with linux/amd64 only"; strings.Count(out, want) != 1 {
		t.Errorf("up does not say once %q:\n%s", want, out)
	}
	for k, want := range map[string]string{
		"WGR_ARM64":        "0",
		"WGR_ARM64_REASON": "no binfmt_misc on " + noBinfmt,
		"BUILDKIT_HOST":    "unix://" + filepath.Join(fresh.cache, "run", "buildkitd.sock"),
		"REGISTRY":         fresh.registry + "/runpod",
		"RUNNER_URL":       "http://" + fresh.mirror,
		"WGR_REGISTRY":     fresh.registry,
		"WGR_CACHE":        fresh.cache,
	} {
		if env[k] != want {
			t.Errorf("local.env: %s=%q, want %q", k, env[k], want)
		}
	}
	status := fresh.run(t, time.Minute, "status")
	if strings.Count(status, ": running") != 3 {
		t.Errorf("status after up:\n%s", status)
	}
	checkRegistryServes(t, devenv["WGR_REGISTRY"], "the running devenv's registry, after the fresh up")

	out = fresh.run(t, 12*time.Minute, "build", "cpu")
	t.Logf("scripts/devenv build cpu:\n%s", tail(out, 8))
	ref := fresh.registry + "/runpod/worker-github_runner:dev-cpu"
	cf, err := image(t, ref).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if ep := cf.Config.Entrypoint; len(ep) != 1 || ep[0] != "/usr/local/bin/worker" {
		t.Errorf("%s: entrypoint %v", ref, ep)
	}

	fresh.down(t)
	checkRegistryServes(t, devenv["WGR_REGISTRY"], "the running devenv's registry, after the fresh down")
	if after := runningPids(t); fmt.Sprint(after) != fmt.Sprint(running) {
		t.Errorf("the running devenv's processes changed: %v before, %v after", running, after)
	}
}

// runningPids lists the running devenv's processes (name: pid), checking
// that each runs.
func runningPids(t *testing.T) map[string]string {
	t.Helper()
	pids := map[string]string{}
	for _, n := range []string{"registry", "mirror", "buildkitd"} {
		b, err := os.ReadFile(filepath.Join(devenv["WGR_CACHE"], "run", n+".pid"))
		if err != nil {
			t.Fatalf("the running devenv: %v", err)
		}
		pid := strings.TrimSpace(string(b))
		if _, err := os.Stat("/proc/" + pid); err != nil {
			t.Errorf("the running devenv's %s (pid %s) does not run", n, pid)
		}
		pids[n] = pid
	}
	return pids
}

// TestDevenvFailingStepSaysWhatAndWhere: a step that fails (debootstrap
// from an unreachable mirror) is named, with its log, whose tail is shown.
func TestDevenvFailingStepSaysWhatAndWhere(t *testing.T) {
	needDevenv(t)
	fresh := newFreshDevenv(t, "DEBIAN_MIRROR=http://"+freeAddr(t)+"/debian")
	out, err := fresh.try(t, 5*time.Minute, "up")
	if err == nil {
		t.Fatalf("up with an unreachable Debian mirror succeeded:\n%s", out)
	}
	logFile := filepath.Join(fresh.cache, "run", "debootstrap.log")
	for _, want := range []string{"debootstrap", "failed", logFile} {
		if !strings.Contains(out, want) {
			t.Errorf("the failure does not say %q:\n%s", want, tail(out, 30))
		}
	}
	if _, err := os.Stat(logFile); err != nil {
		t.Errorf("the log it names: %v", err)
	}
	t.Logf("failure as reported:\n%s", tail(out, 12))
}

// TestDevenvRefusesABusyAddress: an up whose registry address is taken (by
// the running devenv) stops with a message naming the address and the
// variable to change, and starts nothing.
func TestDevenvRefusesABusyAddress(t *testing.T) {
	needDevenv(t)
	fresh := newFreshDevenv(t)
	fresh.registry = devenv["WGR_REGISTRY"]
	fresh.env = append(fresh.env, "WGR_REGISTRY_ADDR="+fresh.registry)
	out, err := fresh.try(t, 5*time.Minute, "up")
	if err == nil {
		t.Fatalf("up on the running devenv's registry address succeeded:\n%s", out)
	}
	for _, want := range []string{fresh.registry, "WGR_REGISTRY_ADDR"} {
		if !strings.Contains(out, want) {
			t.Errorf("the failure does not say %q:\n%s", want, tail(out, 20))
		}
	}
	if _, err := os.Stat(filepath.Join(fresh.cache, "run", "registry.pid")); err == nil {
		t.Error("a registry was started anyway")
	}
	checkRegistryServes(t, devenv["WGR_REGISTRY"], "the running devenv's registry")
}

// TestDevenvArm64Switch: WGR_ARM64=1 where arm64 emulation cannot be had
// (binfmt_misc is an empty folder) stops up with the reason before
// anything starts; a value other than 0, 1 or unset is refused by name.
func TestDevenvArm64Switch(t *testing.T) {
	needDevenv(t)
	for value, want := range map[string]string{
		"1":   "WGR_ARM64=1, but arm64 emulation is not available: no binfmt_misc on ",
		"yes": "WGR_ARM64=yes: want 0, 1 or unset",
	} {
		fresh := newFreshDevenv(t, "WGR_ARM64="+value, "WGR_BINFMT_MISC="+t.TempDir())
		out, err := fresh.try(t, 5*time.Minute, "up")
		if err == nil {
			t.Fatalf("WGR_ARM64=%s: up succeeded without emulation:\n%s", value, out)
		}
		if !strings.Contains(out, want) {
			t.Errorf("WGR_ARM64=%s: the failure does not say %q:\n%s", value, want, tail(out, 20))
		}
		if _, err := os.Stat(filepath.Join(fresh.cache, "run", "registry.pid")); err == nil {
			t.Errorf("WGR_ARM64=%s: a registry was started anyway", value)
		}
	}
}

// freshDevenv is a devenv of the test's own: its own cache folder, loopback
// ports and socket. Cleanup downs it and checks that nothing is left.
type freshDevenv struct {
	cache, registry, mirror string
	env                     []string
	downed                  bool
}

func newFreshDevenv(t *testing.T, extraEnv ...string) *freshDevenv {
	t.Helper()
	f := &freshDevenv{cache: t.TempDir(), registry: freeAddr(t), mirror: freeAddr(t)}
	seedTools(t, filepath.Join(devenv["WGR_CACHE"], "bin"), filepath.Join(f.cache, "bin"))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WGR_") && !strings.HasPrefix(kv, "DEBIAN_MIRROR=") {
			f.env = append(f.env, kv)
		}
	}
	f.env = append(f.env, "WGR_CACHE="+f.cache, "WGR_REGISTRY_ADDR="+f.registry, "WGR_MIRROR_ADDR="+f.mirror)
	f.env = append(f.env, extraEnv...)
	t.Cleanup(func() {
		if !f.downed {
			f.down(t)
		}
	})
	return f
}

// try runs scripts/devenv ARGS in a bounded time (the whole process group
// is killed past it) and returns its output; the time it took is logged.
func (f *freshDevenv) try(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts", "devenv"), args...)
	cmd.Dir, cmd.Env = repoRoot, f.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out := &stamped{start: start, bol: true}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	t.Logf("scripts/devenv %s: %.1fs (%v)", strings.Join(args, " "), time.Since(start).Seconds(), err)
	if ctx.Err() != nil {
		err = fmt.Errorf("did not finish within %v: %w", timeout, ctx.Err())
	}
	return out.buf.String(), err
}

// stamped prefixes every line with the time since start, so that the test
// log shows how long each step of scripts/devenv took.
type stamped struct {
	start time.Time
	buf   bytes.Buffer
	bol   bool // at the beginning of a line
}

func (s *stamped) Write(p []byte) (int, error) {
	for _, line := range bytes.SplitAfter(p, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if s.bol {
			fmt.Fprintf(&s.buf, "[%5.1fs] ", time.Since(s.start).Seconds())
		}
		s.buf.Write(line)
		s.bol = line[len(line)-1] == '\n'
	}
	return len(p), nil
}

// run is try that fails the test unless the command succeeds.
func (f *freshDevenv) run(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := f.try(t, timeout, args...)
	if err != nil {
		t.Fatalf("scripts/devenv %s: %v\n%s", strings.Join(args, " "), err, tail(out, 40))
	}
	return out
}

// down stops the fresh devenv and checks that no process it started, no
// mount under its cache and no listener on its ports is left.
func (f *freshDevenv) down(t *testing.T) {
	t.Helper()
	f.downed = true
	out, err := f.try(t, 2*time.Minute, "down")
	if err != nil {
		t.Errorf("scripts/devenv down: %v\n%s", err, tail(out, 20))
	} else if out != "" {
		t.Logf("down:\n%s", out)
	}
	if left := processesOf(f.cache); len(left) > 0 {
		t.Errorf("processes left after down: %s", strings.Join(left, "; "))
	}
	if m := mountsUnder(t, f.cache); len(m) > 0 {
		t.Errorf("mounts left under the fresh cache after down: %v", m)
	}
	for _, a := range []string{f.registry, f.mirror} {
		if a == devenv["WGR_REGISTRY"] {
			continue
		}
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("something still listens on %s after down", a)
		}
	}
}

// processesOf lists the processes whose environment or command line names
// the cache folder: everything scripts/devenv started with WGR_CACHE=cache.
func processesOf(cache string) []string {
	var left []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		environ, _ := os.ReadFile(filepath.Join(d, "environ"))
		if bytes.Contains(cmdline, []byte(cache)) || bytes.Contains(environ, []byte("WGR_CACHE="+cache+"\x00")) {
			left = append(left, fmt.Sprintf("pid %s: %s", filepath.Base(d), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return left
}

func mountsUnder(t *testing.T, dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var m []string
	for _, l := range strings.Split(string(b), "\n") {
		if fields := strings.Fields(l); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			m = append(m, fields[4])
		}
	}
	return m
}

// seedTools hard-links (or copies) the tool binaries into a new bin folder.
func seedTools(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range seededTools {
		src, dst := filepath.Join(from, n), filepath.Join(to, n)
		if err := os.Link(src, dst); err == nil {
			continue
		}
		if err := copyFile(src, dst); err != nil {
			t.Fatalf("seeding the fresh cache from %s (scripts/devenv up builds it): %v", from, err)
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, st.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// freeAddr returns a loopback address nothing listens on (the kernel's pick);
// it refuses connections until someone listens there.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// closedAddr is a loopback address that refuses connections.
func closedAddr(t *testing.T) string { return freeAddr(t) }

func checkRegistryServes(t *testing.T, addr, what string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Errorf("%s (%s): %v", what, addr, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("%s (%s): %s", what, addr, resp.Status)
	}
}

// scripts/devenv publishes tools/sbomscanner as BuildKit's default SBOM
// generator, docker/buildkit-syft-scanner:stable-1 (docker.io is mirrored
// from the devenv's registry): a build that asks for an SBOM attestation
// without naming a generator gets one, written by that stand-in, offline.
func TestDevenvDefaultSBOMGenerator(t *testing.T) {
	needDevenv(t)
	if _, err := os.Stat(filepath.Join(repoRoot, "tools", "sbomscanner")); err != nil {
		t.Skipf("the devenv publishes no SBOM scanner without tools/sbomscanner: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM ubuntu:24.04\nRUN echo sbom > /sbom-e2e\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := uniqueRegistry(t) + "/sbom:e2e"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(devenv["WGR_CACHE"], "bin", "buildctl"), "--addr", devenv["BUILDKIT_HOST"],
		"build", "--frontend", "dockerfile.v0", "--local", "context="+dir, "--local", "dockerfile="+dir, "--opt", "attest:sbom=",
		"--output", "type=image,name="+ref+",push=true,registry.insecure=true", "--progress", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("buildctl build with attest:sbom: %v\n%s", err, tail(string(out), 30))
	}
	if want := "generating sbom using docker.io/docker/buildkit-syft-scanner:stable-1"; !strings.Contains(string(out), want) {
		t.Errorf("the build output lacks %q:\n%s", want, tail(string(out), 30))
	}
	if doc := sbomAttestation(t, ref); !strings.Contains(doc, "https://spdx.dev/Document") || !strings.Contains(doc, "wgr-sbomscanner") {
		t.Errorf("the SBOM attestation is not an SPDX document by wgr-sbomscanner: %.300s", doc)
	}
}

// sbomAttestation is the first statement of the attestation manifest in
// the index at ref (BuildKit's in-toto statements).
func sbomAttestation(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	as, err := attesttest.Read(idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) == 0 || len(as[0].Layers) == 0 {
		t.Fatalf("%s has no attestation statement: %+v", ref, as)
	}
	return string(as[0].Layers[0].Body)
}

// `scripts/devenv arm64` takes an F-flagged qemu-aarch64 entry that
// something else registered (docker/setup-qemu-action, tonistiigi/binfmt)
// as it is, with no Debian qemu-user-static installed; and a failing
// `apt-get install qemu-user-static` is a reason for amd64 only, not a
// failure of the step (up, in auto mode, carries on with it).
func TestDevenvArm64Entries(t *testing.T) {
	needDevenv(t)
	if b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err != nil || !strings.Contains(string(b), "flags: ") || !strings.Contains(string(b), "F") {
		t.Fatalf("this machine's devenv registers qemu-aarch64 with the F flag; it is not: %v %s", err, b)
	}
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "apt-get"), []byte("#!/bin/sh\necho \"E: Unable to locate package $*\" >&2\nexit 100\n"), 0o755)
	run := func(binfmt string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts", "devenv"), "arm64")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "WGR_CACHE="+t.TempDir(),
			"WGR_BINFMT_MISC="+binfmt, "WGR_QEMU_CONF="+filepath.Join(t.TempDir(), "none.conf"), "WGR_ARM64=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// A foreign entry, enabled, F flag; the kernel's own registration runs
	// the probe (the fake folder only stands for what devenv reads).
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "register"), nil, 0o200)
	os.WriteFile(filepath.Join(foreign, "qemu-aarch64"), []byte("enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: POF\n"), 0o644)
	if out, err := run(foreign); err != nil || !strings.Contains(out, "qemu-aarch64 runs arm64 binaries") {
		t.Errorf("a foreign F-flagged entry without Debian's qemu-aarch64.conf: %v\n%s", err, out)
	}
	// Nothing registered, no conf, apt-get fails: the reason says so.
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "register"), nil, 0o200)
	out, err := run(empty)
	if err == nil || !strings.Contains(out, "apt-get install qemu-user-static failed") || strings.Contains(out, "apt-get install qemu-user-static failed (exit") {
		t.Errorf("apt-get failing: %v\n%s", err, out)
	}
}
