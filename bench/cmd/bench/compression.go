package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// compressionBench: the cpu image built with gzip and with zstd, both with
// force_compression (BuildKit converts every layer not already in the
// requested compression; a gzip layer stays as it is, so the gzip row
// carries the stand-in base as devenv pushed it, at gzip's default level as
// Docker Hub's images are), then for each its compressed size and the time
// a real puller (containerd, started fresh for every pull) takes to fetch
// and unpack it from the local registry: a RunPod worker's cold start.
func compressionBench() {
	logf("compression: the cpu image, gzip against zstd, size and pull-and-unpack")
	ensureContainerd()
	ctxDir := filepath.Join(work, "compression-ctx")
	prepareContext(ctxDir, "bench-compression")
	reg := fmt.Sprintf("%s/bench-compression-%d", env["WGR_REGISTRY"], time.Now().UnixNano())
	kinds := compressionKinds()
	goroot, _ := sh(nil, "go", "env", "GOROOT")
	goroot = strings.TrimSpace(goroot)
	var rows []compressionRow
	for _, k := range kinds {
		r := reg + "/" + k.name
		sh([]string{"REGISTRY=" + r}, filepath.Join(work, "imagegen"), append([]string{"build", "cpu", "--push", "--progress", "quiet",
			"--worker-bin", workerBinFlag(ctxDir), "--output", filepath.Join(work, "out", "oci")}, k.sets...)...)
		cpu := r + "/worker-github_runner:dev-cpu"
		// The synthetic row: the same image plus the Go toolchain folder as
		// one more layer, for a layer as large as the real runner's.
		synth := r + "/synthetic:cpu-go-toolchain"
		df := filepath.Join(work, "synthetic-"+k.name)
		os.MkdirAll(df, 0o755)
		os.WriteFile(filepath.Join(df, "Dockerfile"), []byte("FROM "+cpu+"\nCOPY . /opt/synthetic-go-toolchain/\n"), 0o644)
		buildctl("build", "--frontend", "dockerfile.v0", "--local", "context="+goroot, "--local", "dockerfile="+df, "--progress", "quiet",
			"--opt", "platform="+benchPlatform().Name,
			"--output", "type=image,name="+synth+",push=true,registry.insecure=true,"+k.exporter)
		rows = append(rows, compressionRow{image: "cpu", kind: k.label, want: k.name, ref: cpu},
			compressionRow{image: "cpu + Go toolchain layer (synthetic)", kind: k.label, want: k.name, ref: synth})
	}
	for i := range rows {
		rows[i].measureSize()
	}
	for run := 0; run < *runs; run++ {
		for i := range rows {
			row := &rows[(i+run)%len(rows)] // alternate who goes first
			ctd := startContainerd()        // empty content store and snapshots: a cold pull
			row.pull.add(ctd.pull(row.ref, row.layers).Seconds())
			row.cpu.add(ctd.stop().Seconds())
			logf("  run %d %-40s %-25s pull+unpack %.2fs, containerd CPU %.2fs", run+1, row.image, row.kind, row.pull.values[run], row.cpu.values[run])
		}
	}
	writeCompressionResults(rows)
}

type compressionKind struct {
	name, label string
	sets        []string // imagegen's options
	exporter    string   // buildctl's exporter attributes for the synthetic image
}

func compressionKinds() []compressionKind {
	return []compressionKind{
		{"gzip", "gzip, force_compression", []string{"--set", "cpu.compression=gzip", "--set", "cpu.force_compression=true"},
			"compression=gzip,force-compression=true"},
		{"zstd", "zstd, force_compression", []string{"--set", "cpu.compression=zstd", "--set", "cpu.force_compression=true"},
			"compression=zstd,force-compression=true,oci-mediatypes=true"},
	}
}

type compressionRow struct {
	image, kind, ref string
	want             string // "gzip" or "zstd": every layer's media type says so
	compressed       int64  // bytes: layers + config, as pushed
	uncompressed     int64  // bytes: the layers' tar streams
	layers           int
	pull             stat // seconds, wall clock of ctr's pull
	cpu              stat // seconds of CPU (user + system) containerd spent, start to stop
}

// measureSize reads the manifest: the sum of the layers' and the config's
// sizes as pushed; it fails when a layer is not compressed as asked.
func (r *compressionRow) measureSize() {
	ref, err := name.ParseReference(r.ref, name.Insecure)
	if err != nil {
		fail("%v", err)
	}
	img, err := remote.Image(ref, remote.WithPlatform(v1.Platform{OS: benchPlatform().OS, Architecture: benchPlatform().DockerArch}))
	if err != nil {
		fail("%s: %v", r.ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		fail("%s: %v", r.ref, err)
	}
	r.compressed = m.Config.Size
	for _, l := range m.Layers {
		r.compressed += l.Size
		if !strings.HasSuffix(string(l.MediaType), r.want) {
			fail("%s: a layer of media type %s, want %s: was the compression not applied?", r.ref, l.MediaType, r.want)
		}
	}
	r.layers = len(m.Layers)
	_, r.uncompressed = imageSizes(r.ref)
}

// ensureContainerd installs Debian's containerd when it is missing.
func ensureContainerd() {
	_, e1 := exec.LookPath("containerd")
	_, e2 := exec.LookPath("ctr")
	if e1 == nil && e2 == nil {
		return
	}
	if os.Geteuid() != 0 {
		fail("the compression section pulls with containerd: apt-get install containerd (needs root)")
	}
	logf("apt-get install containerd")
	sh(nil, "apt-get", "update")
	sh([]string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", "install", "-y", "containerd")
}

type containerd struct {
	dir, sock string
	cmd       *exec.Cmd
	done      func() // unregisters the cleanup that stops it
}

// startContainerd starts a containerd of the bench's own: its own root,
// state and socket under the scratch folder, CRI off, never the machine's.
func startContainerd() *containerd {
	dir, err := os.MkdirTemp(work, "containerd-")
	if err != nil {
		fail("%v", err)
	}
	c := &containerd{dir: dir, sock: filepath.Join(dir, "c.sock")}
	c.done = atCleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(containerdConfig(dir)), 0o644)
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		fail("%v", err)
	}
	c.cmd = exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		fail("start containerd: %v", err)
	}
	c.done()
	c.done = atCleanup(func() { c.stop() })
	logFile.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, _, err := try(nil, "ctr", "--address", c.sock, "version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			c.stop()
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			fail("containerd did not start in 30s:\n%s", tail(string(b), 20))
		}
	}
}

// containerdConfig is the configuration of a containerd whose files all
// live under dir.
func containerdConfig(dir string) string {
	sock := filepath.Join(dir, "c.sock")
	return fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
}

// pull times ctr's pull, which fetches every blob and unpacks every layer
// into overlayfs snapshots, and checks that it did unpack them all.
func (c *containerd) pull(ref string, layers int) time.Duration {
	ctr := []string{"--address", c.sock, "--namespace", "bench"}
	o, d := sh(nil, "ctr", append(ctr, "images", "pull", "--plain-http", "--snapshotter", "overlayfs", "--platform", benchPlatform().Name, ref)...)
	if !strings.Contains(o, "unpacking "+benchPlatform().Name) {
		fail("ctr pull %s did not unpack:\n%s", ref, tail(o, 10))
	}
	snaps, _ := sh(nil, "ctr", append(ctr, "snapshots", "--snapshotter", "overlayfs", "ls")...)
	if n := len(strings.Split(strings.TrimSpace(snaps), "\n")) - 1; n != layers {
		fail("ctr pull %s: %d snapshots for %d layers:\n%s", ref, n, layers, tail(snaps, 10))
	}
	return d
}

// stop ends this containerd (by its own process), removes its folder and
// reports the CPU time it used.
func (c *containerd) stop() time.Duration {
	c.done()
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], c.dir+"/") {
				syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	}
	os.RemoveAll(c.dir)
	if c.cmd.ProcessState == nil { // waited for elsewhere (an interrupted bench)
		return 0
	}
	return c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()
}

func writeCompressionResults(rows []compressionRow) {
	if !strings.HasSuffix(results.String(), "\n\n") {
		results.WriteString("\n")
	}
	fmt.Fprintf(&results, "## 7. Layer compression: gzip against zstd, the cpu image (measured %s, %d runs)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *runs)
	results.WriteString(compressionMethod())
	results.WriteString("| image | compression | layers | compressed MB | uncompressed MB | pull and unpack (s) | containerd CPU (s) |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&results, "| %s | %s | %d | %.1f | %.1f | %.2f (%s) | %.2f (%s) |\n", r.image, r.kind, r.layers, float64(r.compressed)/1e6, float64(r.uncompressed)/1e6, r.pull.median(), r.pull.spread(), r.cpu.median(), r.cpu.spread())
	}
	results.WriteString("\n")
	half := len(rows) / 2 // gzip's rows, then zstd's
	for i := 0; i < half; i++ {
		g, z := rows[i], rows[i+half]
		pull, cpu := paired(g.pull, z.pull), paired(g.cpu, z.cpu)
		fmt.Fprintf(&results, "- %s, zstd/gzip: size %.2f (%.1f MB less to transfer); pull and unpack, paired by run: median %.2f (%s), %s; containerd CPU, paired by run: median %.2f (%s), %s.\n",
			g.image, float64(z.compressed)/float64(g.compressed), float64(g.compressed-z.compressed)/1e6,
			pull.median(), pull.spread(), verdict(pull), cpu.median(), cpu.spread(), verdict(cpu))
	}
	if half == 2 {
		dg, dz := rows[1].cpu.median()-rows[0].cpu.median(), rows[3].cpu.median()-rows[2].cpu.median()
		fmt.Fprintf(&results, "\nThe synthetic layer (%.1f MB uncompressed) adds %.1f s of containerd CPU with gzip and %.1f s with zstd (difference of the medians).\n",
			float64(rows[1].uncompressed-rows[0].uncompressed)/1e6, dg, dz)
	}
	results.WriteString("\nThe runner here is the small fake tarball, so the cpu rows hold the Debian stand-in base, the apt packages, Kaniko and the worker, but not the real runner's ~211 MB of .NET (thousands of files): the real image is larger and its largest layer compresses differently. The synthetic rows add the Go toolchain folder (GOROOT: binaries, archives and sources, " +
		"a mix closer to the runner's than the fake is) as one more layer, clearly not the runner itself. The registry is on loopback, so the times are mostly containerd's own work on this machine's 2 cores, shared with other work at the time, hence the spread; a RunPod host pulling from a remote registry also pays transfer, which scales with the compressed size.\n\n")
}

// compressionMethod is the section's paragraph on what was built and how
// it was measured.
func compressionMethod() string {
	v, _, _ := try(nil, "containerd", "--version")
	f := strings.Fields(v)
	ctdVersion := "containerd"
	if len(f) >= 3 {
		ctdVersion = "containerd " + f[2]
	}
	gunzip := "Go's compress/gzip in containerd (no unpigz on PATH)"
	if _, err := exec.LookPath("unpigz"); err == nil {
		gunzip = "unpigz (containerd uses it when it is on PATH)"
	}
	return fmt.Sprintf("The cpu variant built by `imagegen build cpu --push` twice, with `--set cpu.compression=gzip --set cpu.force_compression=true` and with `--set cpu.compression=zstd --set cpu.force_compression=true` (BuildKit's `force-compression=true`): BuildKit converts every layer not already in the requested compression, so the zstd row re-compresses the base layer while the gzip row keeps it as `scripts/devenv` pushed it, gzipped at gzip's default level as Docker Hub's images are (a gzip layer stays as it is even with force-compression: seen in the registry). "+
		"Size: the manifest's layers plus its config, MB (10^6 bytes) as pushed; uncompressed: the layers' tar streams. Pull and unpack: `ctr images pull --plain-http --snapshotter overlayfs` (%s, Debian's package) from the local registry into a containerd started fresh for every pull (its own root, state, opt folder and socket under /tmp, so nothing is cached), which fetches every blob and unpacks every layer; seconds, wall clock, %d runs, the rows alternating who goes first. "+
		"Containerd CPU: the user and system time of that containerd process from start to stop (ctr itself fetches the blobs and streams them to it; containerd writes, verifies, decompresses and unpacks them). Gzip is decompressed by %s. "+
		"Ratios are paired by run: zstd's value over gzip's in the same round of pulls (one after the other), median and range; a difference is clear only when every run agrees on its direction. "+
		"Reproduce: `bench/run --runs %d --only compression --out /tmp/compression.md`, then merge the section into bench/RESULTS.md by hand.\n\n", ctdVersion, *runs, gunzip, *runs)
}

// paired is b over a, run by run (the same run index measured both).
func paired(a, b stat) stat {
	var r stat
	for i := 0; i < min(len(a.values), len(b.values)); i++ {
		if a.values[i] > 0 {
			r.add(b.values[i] / a.values[i])
		}
	}
	return r
}

// verdict says what paired zstd/gzip ratios show, and no more.
func verdict(r stat) string {
	lower := 0
	for _, v := range r.values {
		if v < 1 {
			lower++
		}
	}
	switch n := len(r.values); {
	case n > 0 && lower == n:
		return fmt.Sprintf("zstd lower in all %d runs", n)
	case n > 0 && lower == 0 && slices.Min(r.values) > 1:
		return fmt.Sprintf("zstd higher in all %d runs", n)
	default:
		return fmt.Sprintf("no clear difference: zstd lower in %d of %d runs", lower, n)
	}
}
