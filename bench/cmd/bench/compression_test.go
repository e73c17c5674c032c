package main

import (
	"strings"
	"testing"
)

// The section's ratios pair each gzip row with its zstd row, and the
// synthetic layer's cost is the difference between a kind's two rows.
func TestCompressionResultsPairGzipWithZstd(t *testing.T) {
	results.Reset()
	defer results.Reset()
	row := func(image, kind string, c, u int64, pull, cpu float64) compressionRow {
		r := compressionRow{image: image, kind: kind, compressed: c, uncompressed: u, layers: 5}
		r.pull.add(pull)
		r.cpu.add(cpu)
		return r
	}
	writeCompressionResults([]compressionRow{
		row("cpu", "gzip", 300e6, 600e6, 20, 16),
		row("cpu + synthetic", "gzip", 400e6, 850e6, 30, 26),
		row("cpu", "zstd", 270e6, 600e6, 15, 12),
		row("cpu + synthetic", "zstd", 360e6, 850e6, 27, 21),
	})
	got := results.String()
	for _, want := range []string{
		"| cpu | gzip | 5 | 300.0 | 600.0 | 20.00 (20.00-20.00) | 16.00 (16.00-16.00) |",
		"- cpu, zstd/gzip: size 0.90 (30.0 MB less to transfer), pull and unpack 0.75, containerd CPU 0.75",
		"- cpu + synthetic, zstd/gzip: size 0.90 (40.0 MB less to transfer), pull and unpack 0.90, containerd CPU 0.81",
		"The synthetic layer (250.0 MB uncompressed) adds 10.0 s of containerd CPU with gzip and 9.0 s with zstd. About the same",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}
