// Package variants reads the image matrix (variants.hcl) and resolves it into a
// sorted list of fully evaluated, validated variants.
//
// Evaluation runs in phases, as Terraform and Packer do: variables (defaults,
// then the environment, then --var), then the top-level runner and kaniko
// blocks, then variant blocks (inherits, matrix expansion), then --set
// overrides, then validation. Every problem is an hcl.Diagnostic with a source
// range; all known problems are collected before Load gives up.
package variants

import "github.com/hashicorp/hcl/v2"

// Flavours a variant may have. GPU variants need a CUDA version. A scaler
// variant is the autoscaler's image (cmd/scaler on a distroless base): no
// runner, no Kaniko, no CUDA, no packages.
const (
	FlavourGPU    = "gpu"
	FlavourCPU    = "cpu"
	FlavourScaler = "scaler"
)

// Matrix is the resolved image matrix.
type Matrix struct {
	// Variants sorted by name.
	Variants []*Variant `json:"variants"`
	// Pins are the files' pins, applied to the variants' images (none
	// with Options.NoPins); build applies them to --attest entries too.
	Pins Pins `json:"-"`
}

// Variant is one image flavour, fully resolved.
type Variant struct {
	// Name is unique in the matrix; matrix variants get theirs from `name`.
	Name string `json:"name"`
	// Flavour is "gpu" or "cpu" (the seed's BUILD_TYPE), or "scaler".
	Flavour string `json:"flavour"`
	// Base is the base image reference; for a variant built on another,
	// the image the chain of variants starts from.
	Base string `json:"base"`
	// BaseVariant names the variant this one is built on (base =
	// variant.NAME), Parent is that variant: the image has all its layers
	// but the worker's, then this variant's own.
	BaseVariant string   `json:"base_variant,omitempty"`
	Parent      *Variant `json:"-"`
	// CUDA is the CUDA version of a GPU variant.
	CUDA string `json:"cuda,omitempty"`
	// Platforms, e.g. linux/amd64; each needs a runner checksum.
	Platforms []string `json:"platforms"`
	// Image is the repository the tags belong to (registry/namespace/name).
	Image string `json:"image"`
	// Tags are full references (Image:tag), sorted, without duplicates.
	Tags []string `json:"tags"`
	// Labels added to the image on top of the generated OCI labels.
	Labels map[string]string `json:"labels"`
	// Args are extra build arguments (ARG with default in the Dockerfile).
	Args map[string]string `json:"args"`
	// RunnerPackages are the runner's native dependencies, installed
	// explicitly because installdependencies.sh misses some on Ubuntu 24.04.
	RunnerPackages []string `json:"runner_packages"`
	// Packages are further apt packages the image carries.
	Packages []string `json:"packages"`
	// Steps are Dockerfile instructions of the variant's own, inserted
	// after the system packages and before the Kaniko, runner and worker
	// layers (checked by render.CheckSteps).
	Steps []string `json:"steps,omitempty"`
	// Template is a Dockerfile template of the variant's own (a path
	// relative to the variants file that sets it) instead of the built-in
	// one; see render.Variant.
	Template string `json:"template,omitempty"`
	// Runner is the GitHub Actions runner this variant ships.
	Runner RunnerRelease `json:"runner"`
	// Kaniko is the Kaniko executor this variant ships.
	Kaniko Kaniko `json:"kaniko"`
	// Golang is the toolchain image the Dockerfile compiles the worker
	// with (imagegen replaces that stage with its own binaries).
	Golang Golang `json:"golang"`
	// Compression is the layer compression of the image: gzip (the
	// default), zstd or uncompressed (BuildKit's compression=).
	Compression string `json:"compression"`
	// CompressionLevel is the level for Compression (gzip 0-9, zstd
	// 0-22); nil means the algorithm's default.
	CompressionLevel *int `json:"compression_level,omitempty"`
	// ForceCompression re-compresses layers that already exist in another
	// compression (those of the base image) instead of reusing them.
	ForceCompression bool `json:"force_compression,omitempty"`
	// Attest are the attestations the image carries, in bake's form
	// (type=provenance,mode=max; type=sbom); see ParseAttestation.
	Attest []string `json:"attest,omitempty"`
	// Matrix holds the values of this variant's matrix combination, if any.
	Matrix map[string]string `json:"matrix,omitempty"`
	// Source is where the variant block is declared (file:line:col).
	Source string `json:"source"`

	// Where each field was set, for diagnostics; setBy names --set overrides.
	namePos hcl.Range
	pos     map[string]hcl.Range
	listPos map[string][]hcl.Range
	mapPos  map[string]map[string]hcl.Range
	runPos  runnerPos
	setBy   map[string]string
}

// RunnerRelease describes the GitHub Actions runner release a variant installs.
type RunnerRelease struct {
	Version string `json:"version"`
	// URL is the download base; the tarball is
	// URL/v<version>/actions-runner-linux-<arch>-<version>.tar.gz.
	URL string `json:"url"`
	// SHA256 maps a platform (linux/amd64) to the tarball's checksum.
	SHA256 map[string]string `json:"sha256"`
}

// Kaniko describes the Kaniko executor a variant ships.
type Kaniko struct {
	Version string `json:"version"`
	// Image is the executor image /kaniko/executor is copied from.
	Image string `json:"image"`
}

// Golang describes the Go toolchain image of the Dockerfiles' worker
// stage (the golang block of variants.hcl).
type Golang struct {
	// Version is the Go version, at least go.mod's.
	Version string `json:"version"`
	// Image is the toolchain image the stage starts from.
	Image string `json:"image"`
}

// DefaultGolang is the toolchain when variants.hcl has no golang block:
// the Go version go.mod needs (a test keeps them in step).
var DefaultGolang = Golang{Version: "1.26.8", Image: "golang:1.26.8"}

// IsScaler says whether the variant is the scaler's image rather than a
// worker's (no runner, Kaniko, CUDA or packages).
func (v *Variant) IsScaler() bool { return v.Flavour == FlavourScaler }

// StepAt is where step i was written in the variants file, or nil.
func (v *Variant) StepAt(i int) *hcl.Range { return v.listAt("steps", i) }

// Find returns the variant with that name, or nil.
func (m *Matrix) Find(name string) *Variant {
	for _, v := range m.Variants {
		if v.Name == name {
			return v
		}
	}
	return nil
}
