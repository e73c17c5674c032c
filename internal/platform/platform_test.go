package platform

import (
	"debug/elf"
	"slices"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	if got, want := Names(), []string{"linux/amd64", "linux/arm64"}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	cases := []struct {
		name, goarch, runner, bin string
		machine                   elf.Machine
	}{
		{"linux/amd64", "amd64", "x64", "worker-linux-amd64", elf.EM_X86_64},
		{"linux/arm64", "arm64", "arm64", "worker-linux-arm64", elf.EM_AARCH64},
	}
	for _, c := range cases {
		p, ok := Lookup(c.name)
		if !ok || p.GOARCH != c.goarch || p.RunnerArch != c.runner || p.Machine != c.machine || p.DockerArch != c.goarch {
			t.Errorf("Lookup(%s) = %+v, %v", c.name, p, ok)
		}
		if got := WorkerBinary(c.name); got != c.bin {
			t.Errorf("WorkerBinary(%s) = %s, want %s", c.name, got, c.bin)
		}
		for _, q := range []func() (Platform, bool){
			func() (Platform, bool) { return ByGOARCH(c.goarch) },
			func() (Platform, bool) { return ByRunnerArch(c.runner) },
			func() (Platform, bool) { return ByMachine(c.machine) },
		} {
			if got, ok := q(); !ok || got.Name != c.name {
				t.Errorf("reverse lookup for %s = %+v, %v", c.name, got, ok)
			}
		}
	}
}

func TestUnknown(t *testing.T) {
	for _, name := range []string{"", "linux/arm/v7", "windows/amd64", "linux/x64"} {
		if p, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) = %+v, want none", name, p)
		}
	}
	if _, ok := ByRunnerArch("arm"); ok {
		t.Error("ByRunnerArch(arm) found a platform")
	}
	if _, ok := ByGOARCH("386"); ok {
		t.Error("ByGOARCH(386) found a platform")
	}
	if _, ok := ByMachine(elf.EM_RISCV); ok {
		t.Error("ByMachine(EM_RISCV) found a platform")
	}
}

// The Dockerfile's name for the worker binary, once Docker sets
// TARGETARCH, is the name the build context has it under.
func TestDockerfileWorkerBinary(t *testing.T) {
	for _, p := range All() {
		got := strings.ReplaceAll(DockerfileWorkerBinary(), "${TARGETARCH}", p.DockerArch)
		if want := WorkerBinary(p.Name); got != want || p.OS != "linux" {
			t.Errorf("%s: Dockerfile copies %s, context has %s", p.Name, got, want)
		}
	}
}

func TestAllIsACopy(t *testing.T) {
	All()[0].Name = "changed"
	if p, _ := Lookup("linux/amd64"); p.Name != "linux/amd64" {
		t.Fatal("All() exposed the table")
	}
}
