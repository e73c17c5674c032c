package fitness

import (
	"fmt"
	"strconv"
	"strings"
)

// The endpoint settings. WORKER_FLAVOUR and WORKER_CUDA_VERSION are set by
// the image; the others by the endpoint (or left to their defaults).
const (
	EnvCheck        = "FITNESS_CHECK"             // "off" skips every check
	EnvMinDisk      = "FITNESS_MIN_DISK_MB"       // default 2048
	EnvMinMemory    = "FITNESS_MIN_MEMORY_MB"     // default 512
	EnvGPUCount     = "FITNESS_GPU_COUNT"         // default: any, at least one
	EnvMinGPUMemory = "FITNESS_MIN_GPU_MEMORY_MB" // default: any
	EnvFlavour      = "WORKER_FLAVOUR"
	EnvCUDA         = "WORKER_CUDA_VERSION"
)

// Default minimums: what a runner and a small job need.
const (
	DefaultMinDiskMiB = 2048
	DefaultMinMemMiB  = 512
)

// FromEnv reads the limits for a job whose work folder is workDir. It
// returns ok=false when the endpoint turned the checks off.
func FromEnv(getenv func(string) string, workDir string) (l Limits, ok bool, err error) {
	switch v := strings.ToLower(strings.TrimSpace(getenv(EnvCheck))); v {
	case "", "on", "1", "true":
	case "off", "0", "false":
		return Limits{}, false, nil
	default:
		return Limits{}, false, fmt.Errorf("%s must be on or off", EnvCheck)
	}
	l = Limits{GPU: getenv(EnvFlavour) == "gpu", MinCUDA: strings.TrimSpace(getenv(EnvCUDA)), WorkDir: workDir}
	for _, s := range []struct {
		env string
		dst *int64
		def int64
	}{
		{EnvMinDisk, &l.MinDiskMiB, DefaultMinDiskMiB},
		{EnvMinMemory, &l.MinMemMiB, DefaultMinMemMiB},
		{EnvMinGPUMemory, &l.MinGPUMemMiB, 0},
	} {
		if *s.dst, err = number(getenv, s.env, s.def); err != nil {
			return Limits{}, false, err
		}
	}
	n, err := number(getenv, EnvGPUCount, 0)
	if err != nil || n > 64 {
		return Limits{}, false, fmt.Errorf("%s must be a number of GPUs from 0 to 64", EnvGPUCount)
	}
	l.GPUCount = int(n)
	return l, true, nil
}

func number(getenv func(string) string, env string, def int64) (int64, error) {
	v := strings.TrimSpace(getenv(env))
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return 0, fmt.Errorf("%s must be a whole number ≥ 0", env)
	}
	return n, nil
}
