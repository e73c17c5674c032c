// Package platform is the one table of the platforms images are built for:
// for each, the names Docker, Go and the GitHub Actions runner give its
// architecture, the ELF machine of its executables, and the file name the
// worker binary has in a build context. It imports only the standard
// library: the worker binary uses it too.
package platform

import (
	"debug/elf"
	"strings"
)

// Platform is one supported os/arch.
type Platform struct {
	Name       string      // linux/amd64, as in variants.hcl and OCI
	OS         string      // linux (GOOS and Docker's TARGETOS)
	DockerArch string      // amd64 (Docker's TARGETARCH)
	GOARCH     string      // amd64
	RunnerArch string      // x64: the runner tarball's arch (actions-runner-linux-x64-...)
	Machine    elf.Machine // EM_X86_64: the e_machine of its executables
}

// supported is the table; the GitHub runner ships for these.
var supported = []Platform{
	{Name: "linux/amd64", OS: "linux", DockerArch: "amd64", GOARCH: "amd64", RunnerArch: "x64", Machine: elf.EM_X86_64},
	{Name: "linux/arm64", OS: "linux", DockerArch: "arm64", GOARCH: "arm64", RunnerArch: "arm64", Machine: elf.EM_AARCH64},
}

// All returns the supported platforms, in a fixed order.
func All() []Platform { return append([]Platform(nil), supported...) }

// Names returns the supported platforms' names (linux/amd64, ...).
func Names() []string {
	out := make([]string, len(supported))
	for i, p := range supported {
		out[i] = p.Name
	}
	return out
}

// Lookup finds a platform by name (linux/amd64).
func Lookup(name string) (Platform, bool) {
	return find(func(p Platform) bool { return p.Name == name })
}

// ByGOARCH finds the linux platform for a GOARCH (runtime.GOARCH).
func ByGOARCH(goarch string) (Platform, bool) {
	return find(func(p Platform) bool { return p.OS == "linux" && p.GOARCH == goarch })
}

// ByRunnerArch finds the linux platform for a runner tarball arch (x64).
func ByRunnerArch(arch string) (Platform, bool) {
	return find(func(p Platform) bool { return p.OS == "linux" && p.RunnerArch == arch })
}

// ByMachine finds the platform whose executables have this ELF machine.
func ByMachine(m elf.Machine) (Platform, bool) {
	return find(func(p Platform) bool { return p.Machine == m })
}

func find(match func(Platform) bool) (Platform, bool) {
	for _, p := range supported {
		if match(p) {
			return p, true
		}
	}
	return Platform{}, false
}

// WorkerBinary is the file name of the worker binary for a platform
// (os/arch) at the root of a build context: worker-linux-amd64.
func WorkerBinary(name string) string {
	return "worker-" + strings.ReplaceAll(name, "/", "-")
}

// DockerfileWorkerBinary is WorkerBinary as a Dockerfile names it for
// whatever platform the build is for: Docker sets TARGETARCH.
func DockerfileWorkerBinary() string { return WorkerBinary("linux/${TARGETARCH}") }
