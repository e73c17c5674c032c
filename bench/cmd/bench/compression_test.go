package main

import (
	"regexp"
	"strings"
	"testing"
)

// The section pairs each gzip row with its zstd row: sizes, and the
// zstd/gzip ratio of each run index (the two pulls of a run are measured
// back to back), with what those ratios show and nothing they do not.
func TestCompressionResultsPairGzipWithZstd(t *testing.T) {
	results.Reset()
	defer results.Reset()
	row := func(image, kind string, c, u int64, pull, cpu []float64) compressionRow {
		r := compressionRow{image: image, kind: kind, compressed: c, uncompressed: u, layers: 5}
		for i := range pull {
			r.pull.add(pull[i])
			r.cpu.add(cpu[i])
		}
		return r
	}
	writeCompressionResults([]compressionRow{
		row("cpu", "gzip", 300e6, 600e6, []float64{20, 10, 30}, []float64{16, 16, 16}),
		row("cpu + synthetic", "gzip", 400e6, 850e6, []float64{30, 30, 30}, []float64{26, 26, 26}),
		row("cpu", "zstd", 270e6, 600e6, []float64{15, 11, 21}, []float64{12, 12, 12}),
		row("cpu + synthetic", "zstd", 360e6, 850e6, []float64{33, 36, 39}, []float64{21, 21, 21}),
	})
	got := results.String()
	for _, want := range []string{
		"| cpu | gzip | 5 | 300.0 | 600.0 | 20.00 (10.00-30.00) | 16.00 (16.00-16.00) |",
		"- cpu, zstd/gzip: size 0.90 (30.0 MB less to transfer); pull and unpack, paired by run: median 0.75 (0.70-1.10), no clear difference: zstd lower in 2 of 3 runs; containerd CPU, paired by run: median 0.75 (0.75-0.75), zstd lower in all 3 runs.",
		"- cpu + synthetic, zstd/gzip: size 0.90 (40.0 MB less to transfer); pull and unpack, paired by run: median 1.20 (1.10-1.30), zstd higher in all 3 runs; containerd CPU, paired by run: median 0.81 (0.81-0.81), zstd lower in all 3 runs.",
		"The synthetic layer (250.0 MB uncompressed) adds 10.0 s of containerd CPU with gzip and 9.0 s with zstd (difference of the medians).",
		"Reproduce: `bench/run --runs 3 --only compression --out /tmp/compression.md`",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	// A section merged by hand into RESULTS.md says when it was measured.
	if !regexp.MustCompile(`(?m)^## 7\. Layer compression: gzip against zstd, the cpu image \(measured \d{4}-\d\d-\d\d \d\d:\d\d UTC, 3 runs\)$`).MatchString(got) {
		t.Errorf("the section's heading does not say its run:\n%s", got)
	}
	// A claim no measurement backs (the synthetic layer's cost is writing
	// files, not decompressing them) is not printed.
	for _, bad := range []string{"About the same", "writing them out"} {
		if strings.Contains(got, bad) {
			t.Errorf("unmeasured claim %q in\n%s", bad, got)
		}
	}
}

// Both rows are built with force_compression, so both convert every layer
// not already in their compression (the base, for zstd).
func TestCompressionKindsRecompressEveryLayer(t *testing.T) {
	for _, k := range compressionKinds() {
		sets := strings.Join(k.sets, " ")
		for _, want := range []string{"--set cpu.compression=" + k.name, "--set cpu.force_compression=true"} {
			if !strings.Contains(sets, want) {
				t.Errorf("%s: imagegen options %q lack %q", k.name, sets, want)
			}
		}
		for _, want := range []string{"compression=" + k.name, "force-compression=true"} {
			if !strings.Contains(k.exporter, want) {
				t.Errorf("%s: exporter %q lacks %q", k.name, k.exporter, want)
			}
		}
		if !strings.Contains(k.label, "force_compression") {
			t.Errorf("%s: label %q does not say force_compression", k.name, k.label)
		}
	}
}

// The bench's containerd keeps every file under its own folder: the opt
// plugin's default, /opt/containerd, would be created for the whole machine.
func TestContainerdConfigKeepsEverythingUnderItsFolder(t *testing.T) {
	dir := "/tmp/wgr-bench-1/containerd-2"
	cfg := containerdConfig(dir)
	if !strings.Contains(cfg, "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \""+dir+"/opt\"\n") {
		t.Errorf("no opt plugin path under %s in\n%s", dir, cfg)
	}
	for _, m := range regexp.MustCompile(`"(/[^"]*)"`).FindAllStringSubmatch(cfg, -1) {
		if !strings.HasPrefix(m[1], dir+"/") {
			t.Errorf("path %s outside %s in\n%s", m[1], dir, cfg)
		}
	}
}
