package fitness

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// smiLog is the part of `nvidia-smi -q -x` this package reads.
type smiLog struct {
	Driver string `xml:"driver_version"`
	CUDA   string `xml:"cuda_version"`
	GPUs   []struct {
		Name   string `xml:"product_name"`
		Memory struct {
			Total string `xml:"total"`
			Used  string `xml:"used"`
		} `xml:"fb_memory_usage"`
	} `xml:"gpu"`
}

// maxSMI bounds what is read from nvidia-smi: its XML for eight GPUs is
// about 100 KiB.
const maxSMI = 4 << 20

func (p Probe) smi(ctx context.Context) (*smiLog, error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.NvidiaSMI, "-q", "-x")
	// On timeout the whole group goes (a wrapper's children too), and the
	// output pipes are not waited for past a second: a child holding them
	// open cannot stretch the timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out, errOut capped
	out.max, errOut.max = maxSMI, 512
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return nil, fmt.Errorf("nvidia-smi did not answer within %s", p.Timeout)
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("nvidia-smi not found (the NVIDIA container runtime mounts it)")
	case err != nil:
		return nil, fmt.Errorf("nvidia-smi: %v: %s", err, short(strings.TrimSpace(errOut.String())))
	case out.over:
		return nil, fmt.Errorf("nvidia-smi wrote more than %d bytes", maxSMI)
	}
	var log smiLog
	if err := xml.Unmarshal(out.Bytes(), &log); err != nil {
		return nil, fmt.Errorf("nvidia-smi's XML does not parse: %s", short(err.Error()))
	}
	return &log, nil
}

// capped keeps the first max bytes written and notes the rest. (It does
// not embed bytes.Buffer: io.Copy would use the buffer's ReadFrom and
// bypass the cap.)
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); len(p) > room {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) Bytes() []byte  { return c.buf.Bytes() }
func (c *capped) String() string { return c.buf.String() }

var _ io.Writer = (*capped)(nil)

// mib reads "81920 MiB" (nvidia-smi's unit); anything else is 0.
func mib(s string) int64 {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "MiB" {
		return 0
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

type version struct{ major, minor int }

func (v version) less(w version) bool {
	return v.major < w.major || v.major == w.major && v.minor < w.minor
}

// majorMinor reads the first two numbers of "12.8.1" or "12.4".
func majorMinor(s string) (version, bool) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 {
		return version{}, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major < 0 || minor < 0 {
		return version{}, false
	}
	return version{major, minor}, true
}
