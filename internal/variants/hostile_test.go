//go:build linux

package variants

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostileEnv makes the test binary a child that loads one file and prints
// its diagnostics, so a file that crashes the loader (stack overflow) or
// eats memory only takes the child down.
const hostileEnv = "VARIANTS_HOSTILE_FILE"

func TestMain(m *testing.M) {
	if p := os.Getenv(hostileEnv); p != "" {
		_, files, diags := LoadFiles([]string{p}, Options{LookupEnv: env()})
		WriteDiagnostics(os.Stdout, files, diags)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Bounds for loading one hostile file, race detector included.
const (
	hostileMaxRSS    = 1 << 30 // the child is killed above this
	hostileWantRSS   = 400 << 20
	hostileMaxTime   = 60 * time.Second // killed after this
	hostileWantTime  = 20 * time.Second
	hostileMaxOutput = 8 << 10
)

type hostileRun struct {
	out     []byte // the first 64 KiB
	outLen  int
	peakRSS int64
	took    time.Duration
	err     error // the child's exit, or why it was killed
}

// loadInChild loads path in a child process, watching its memory.
func loadInChild(t *testing.T, path string) hostileRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hostileEnv+"="+path)
	out := &cappedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var run hostileRun
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(hostileMaxTime)
	for run.err == nil {
		select {
		case err := <-done:
			run.took = time.Since(start)
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				run.peakRSS = max(run.peakRSS, ru.Maxrss<<10)
			}
			if err != nil {
				run.err = fmt.Errorf("child failed: %v", err)
			}
			run.out, run.outLen = out.Bytes(), out.n
			return run
		case <-tick.C:
			run.peakRSS = max(run.peakRSS, rss(cmd.Process.Pid))
			if run.peakRSS > hostileMaxRSS {
				run.err = fmt.Errorf("killed: more than %d MiB resident", hostileMaxRSS>>20)
			}
		case <-deadline:
			run.err = fmt.Errorf("killed: still running after %v", hostileMaxTime)
		}
	}
	cmd.Process.Kill()
	<-done
	run.took = time.Since(start)
	run.out, run.outLen = out.Bytes(), out.n
	return run
}

// rss is a process's resident memory in bytes, from /proc.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cappedBuffer keeps the first max bytes written and counts them all. Not
// an embedded bytes.Buffer: io.Copy would use its ReadFrom, uncapped.
type cappedBuffer struct {
	buf    bytes.Buffer
	max, n int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.n += len(p)
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte { return b.buf.Bytes() }

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Hostile files fail fast, in bounded memory, with a short clear error.
func TestHostileFiles(t *testing.T) {
	random := make([]byte, 1<<20) // 1 MiB, cut to the largest size read
	rand.Read(random)
	sparse := filepath.Join(t.TempDir(), "huge.hcl")
	if err := os.WriteFile(sparse, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 100<<20); err != nil {
		t.Fatal(err)
	}
	n := 100000
	tests := []struct {
		name, path, want string
	}{
		{"/dev/zero", "/dev/zero", "not a regular file (a character device)"},
		{"100 MiB file", sparse, "100.0 MiB; a variants file may be at most 256 KiB"},
		{"1 MiB of random bytes", writeFile(t, "random.hcl", random[:MaxFileSize]), "not UTF-8 text"},
		{"100k nested parentheses", writeFile(t, "parens.hcl", []byte(`variable "X" { default = `+strings.Repeat("(", n)+"1"+strings.Repeat(")", n)+" }\n")), "Nesting too deep"},
		{"100k nested lists", writeFile(t, "lists.hcl", []byte(`variable "X" { default = `+strings.Repeat("[", n)+strings.Repeat("]", n)+" }\n")), "Nesting too deep"},
		{"20k chained conditionals", writeFile(t, "cond.hcl", []byte(`variable "X" { default = `+strings.Repeat("true ? 1 : ", 20000)+"1 }\n")), "Nesting too deep"},
		{"100k unary operators", writeFile(t, "bang.hcl", []byte(`variable "X" { default = `+strings.Repeat("!", n)+"true }\n")), "Nesting too deep"},
		{"80k additions over lines", writeFile(t, "plus.hcl", []byte(`variable "X" { default = (1`+strings.Repeat("\n+1", 80000)+") }\n")), "Nesting too deep"},
		{"50k nested interpolations", writeFile(t, "interp.hcl", []byte(`variable "X" { default = `+strings.Repeat(`"${`, 50000)+"1"+strings.Repeat(`}"`, 50000)+" }\n")), "Nesting too deep"},
		{"40k nested blocks", writeFile(t, "blocks.hcl", []byte(strings.Repeat("a {\n", 40000)+strings.Repeat("}\n", 40000))), "Nesting too deep"},
		{"2k chained variables", writeFile(t, "vars.hcl", []byte(chain(2000, `variable "V%d" { default = V%d }`+"\n"))), "Variable chain too deep"},
		{"2k chained parents", writeFile(t, "parents.hcl", []byte(chain(2000, `variant "v%d" { inherits = ["v%d"] }`+"\n"))), "Inheritance chain too deep"},
		{"200k numbers", writeFile(t, "numbers.hcl", []byte(`variable "X" { default = [`+strings.Repeat("1,", 100000)+"] }\n")), "a variants file may have at most 50000"},
		{"a million-variant matrix in 3 lines", writeFile(t, "matrix.hcl", []byte(strings.Replace(cpuVariant, "{", "{\n  matrix = { a = range(100), b = range(100), c = range(100) }\n  name = \"m-${a}-${b}-${c}\"", 1)+tail)), "Matrix too large"},
		{"setproduct of a million", writeFile(t, "setproduct.hcl", []byte(`variable "X" { default = setproduct(range(1000), range(1000)) }`+"\n")), "the product has more than 10000 elements"},
		{"valid-UTF-8 junk", writeFile(t, "junk.hcl", []byte(strings.Repeat("§ ", 50000))), "more than 100 characters HCL does not use"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := loadInChild(t, tc.path)
			t.Logf("%s: %d bytes of diagnostics, %v, peak RSS %d MiB", tc.name, run.outLen, run.took.Round(time.Millisecond), run.peakRSS>>20)
			if run.err != nil {
				t.Fatalf("%v after %v, peak RSS %d MiB; output:\n%.2000s", run.err, run.took, run.peakRSS>>20, run.out)
			}
			if !bytes.Contains(run.out, []byte(tc.want)) {
				t.Errorf("output lacks %q:\n%.2000s", tc.want, run.out)
			}
			if run.outLen > hostileMaxOutput {
				t.Errorf("%d bytes of diagnostics, want at most %d", run.outLen, hostileMaxOutput)
			}
			if run.peakRSS > hostileWantRSS || run.took > hostileWantTime {
				t.Errorf("took %v and %d MiB, want at most %v and %d MiB", run.took, run.peakRSS>>20, hostileWantTime, hostileWantRSS>>20)
			}
		})
	}
}

// chain writes n lines of format, each line i referring to i+1.
func chain(n int, format string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format, i, i+1)
	}
	return b.String()
}
