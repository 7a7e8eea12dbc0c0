// Package benchutil holds what the benchmark programs share: building the
// agent binary and reading a process's memory.
package benchutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

// BuildAgent builds kubectl-prefect into a temporary folder and returns its path.
func BuildAgent() (string, error) {
	dir, err := os.MkdirTemp("", "bench-agent-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kubectl-prefect")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-prefect")
	cmd.Dir = testbed.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the agent: %v\n%s", err, out)
	}
	return bin, nil
}

// Memory reads a process's current and peak resident set size in KiB.
func Memory(pid int) (rss, peak int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			peak = v
		}
	}
	return rss, peak
}
