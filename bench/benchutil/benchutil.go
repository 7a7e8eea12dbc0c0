// Package benchutil holds what the benchmark programs share: building the
// binaries exactly as the release does, and reading a process's memory.
package benchutil

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

// ReleaseFlags are goreleaser's build flags (.goreleaser.yaml), without the
// version stamps, which change nothing in size.
var ReleaseFlags = []string{"-trimpath", "-ldflags", "-s -w"}

// Binaries are the two programs, built as released.
type Binaries struct {
	Dir string
	// Plugin is kubectl-prefect, Agent is prefect-agent (the image's).
	Plugin, Agent string
}

// Build builds both binaries as goreleaser does (CGO_ENABLED=0, -trimpath,
// -s -w) into a temporary folder; Close removes it.
func Build() (*Binaries, error) {
	dir, err := os.MkdirTemp("", "bench-bin-")
	if err != nil {
		return nil, err
	}
	b := &Binaries{Dir: dir, Plugin: filepath.Join(dir, "kubectl-prefect"), Agent: filepath.Join(dir, "prefect-agent")}
	for _, bin := range []string{b.Plugin, b.Agent} {
		args := append([]string{"build", "-o", bin}, ReleaseFlags...)
		cmd := exec.Command("go", append(args, "./cmd/"+filepath.Base(bin))...)
		cmd.Dir = testbed.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("building %s: %v\n%s", filepath.Base(bin), err, out)
		}
	}
	return b, nil
}

// Close removes the binaries.
func (b *Binaries) Close() { os.RemoveAll(b.Dir) }

// Size is a file's size in MB (10^6 bytes, as the targets are given).
func Size(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / 1e6
}

// Mem is a process's memory from /proc/PID/status, in KiB.
type Mem struct {
	// RSS is resident memory now, HWM its peak (VmHWM); Anon and File split
	// RSS into the process's own memory and mapped file pages (the binary).
	RSS, HWM, Anon, File int64
}

// Memory reads a process's memory.
func Memory(pid int) Mem {
	var m Mem
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.RSS = v
		case "VmHWM:":
			m.HWM = v
		case "RssAnon:":
			m.Anon = v
		case "RssFile:":
			m.File = v
		}
	}
	return m
}

// Max keeps the larger of each field.
func (m *Mem) Max(o Mem) {
	m.RSS, m.HWM, m.Anon, m.File = max(m.RSS, o.RSS), max(m.HWM, o.HWM), max(m.Anon, o.Anon), max(m.File, o.File)
}

// MiB formats KiB as MiB.
func MiB(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// Metric reads one unlabelled sample, or the sum of a labelled family, from
// a Prometheus /metrics endpoint at addr (host:port).
func Metric(addr, name string) (float64, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	total, found := 0.0, false
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(line, name); ok && (rest[0] == ' ' || rest[0] == '{') {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				total += v
				found = true
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("%s not in %s/metrics", name, addr)
	}
	return total, s.Err()
}

// HeapInuse is the agent's Go heap in use (go_memstats_heap_inuse_bytes) in MiB.
func HeapInuse(addr string) float64 {
	v, err := Metric(addr, "go_memstats_heap_inuse_bytes")
	if err != nil {
		return 0
	}
	return v / (1 << 20)
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitHealthy waits for the agent's /api/health at addr to answer 200.
func WaitHealthy(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the agent's health endpoint at %s did not answer within %s", addr, timeout)
}
