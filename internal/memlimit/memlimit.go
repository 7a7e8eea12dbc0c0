// Package memlimit tells the Go runtime the container's memory limit, so the
// garbage collector works harder before the kernel's OOM killer would act.
package memlimit

import (
	"bufio"
	"bytes"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction of the cgroup's limit given to the Go runtime when GOMEMLIMIT is
// unset; the rest is for what the runtime does not count (the binary's
// mapped pages, thread stacks outside the heap).
const Fraction = 0.9

// GCPercent is the agent's GOGC when the GOGC variable is unset: the heap may
// grow to 1.5 times the live heap between collections instead of 2 times.
// Measured with `make bench`: 3 MiB less peak RSS in the 1000-run burst, the
// same throughput.
const GCPercent = 50

// SetGCPercent applies GCPercent unless GOGC is set; it reports whether it did.
func SetGCPercent() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(GCPercent)
	return true
}

// ContainerLimitEnv holds the container's memory limit in bytes; `agent
// install` sets it from limits.memory (a resourceFieldRef cannot take 90%).
const ContainerLimitEnv = "PREFECT_AGENT_MEMORY_LIMIT"

// Set applies a memory limit of Fraction of the container's limit (from
// ContainerLimitEnv, else the cgroup's) unless the GOMEMLIMIT variable is set
// (the runtime has then applied it already). It returns the limit in effect,
// 0 when there is none, and where it came from.
func Set() (int64, string) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	}
	if limit, err := strconv.ParseInt(os.Getenv(ContainerLimitEnv), 10, 64); err == nil && limit > 0 {
		goLimit := int64(float64(limit) * Fraction)
		debug.SetMemoryLimit(goLimit)
		return goLimit, ContainerLimitEnv
	}
	limit, ok := CgroupLimit(os.DirFS("/"))
	if !ok {
		return 0, ""
	}
	goLimit := int64(float64(limit) * Fraction)
	debug.SetMemoryLimit(goLimit)
	return goLimit, "cgroup"
}

// CgroupLimit reads this process's cgroup memory limit from root (the file
// system's "/"): cgroup v2's memory.max or v1's memory.limit_in_bytes. It
// reports false when there is no limit or it cannot be read.
func CgroupLimit(root fs.FS) (int64, bool) {
	self, _ := fs.ReadFile(root, "proc/self/cgroup")
	var candidates []string
	s := bufio.NewScanner(bytes.NewReader(self))
	for s.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			candidates = append(candidates, path.Join("sys/fs/cgroup", parts[2], "memory.max"))
		case hasController(parts[1], "memory"):
			candidates = append(candidates, path.Join("sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"))
		}
	}
	// In a container's cgroup namespace the paths above may not exist as
	// such; its own cgroup is then mounted at the top.
	candidates = append(candidates, "sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes")
	for _, name := range candidates {
		raw, err := fs.ReadFile(root, strings.TrimPrefix(name, "/"))
		if err != nil {
			continue
		}
		return parseLimit(string(raw))
	}
	return 0, false
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// parseLimit reads "max" (no limit) or a byte count; cgroup v1 writes a huge
// page-aligned number for "no limit".
func parseLimit(raw string) (int64, bool) {
	raw = strings.TrimSpace(raw)
	if raw == "max" {
		return 0, false
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v <= 0 || v >= math.MaxInt64/2 {
		return 0, false
	}
	return v, true
}
