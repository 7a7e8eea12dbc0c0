package e2e

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
)

// prefectAgent runs the lean binary as the image does: no kubectl, the
// namespace from NAMESPACE, the connection from a kubeconfig.
func prefectAgent(ns string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "prefect-agent"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "NAMESPACE="+ns, "PREFECT__BACKEND=server",
		"PREFECT__CLOUD__AGENT__LABELS=[\"e2e\"]")
	return cmd
}

func TestPrefectAgentBinaryRunsFlowRuns(t *testing.T) {
	ns := cluster.Namespace(t)
	em, srv := startEmulator(t)
	run, _ := em.AddFlowRun(emulator.FlowRunSpec{Labels: []string{"e2e"}})

	// The arguments an older `agent install` gave the image still work.
	p := startAgentProcess(t, prefectAgent(ns, "agent", "start", "--api", srv.URL, "--agent-name", "lean-agent"))
	p.waitForJob(t, "prefect-agent", ns, run.ID)
	p.stopWithSIGTERM(t, "prefect-agent")
	if log := p.stderr.String(); !strings.Contains(log, `"Agent registered" agent="lean-agent"`) || !strings.Contains(log, "namespace=\""+ns+"\"") {
		t.Errorf("prefect-agent log lacks the registration in namespace %s:\n%s", ns, log)
	}
}

func TestPrefectAgentBadFlagExitsNonZero(t *testing.T) {
	cluster.Require(t)
	cmd := prefectAgent("default", "--backend", "hosted")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("a bad --backend: %v, want exit status 1", err)
	}
	if got := strings.TrimSpace(stderr.String()); got != `error: --backend "hosted": expected server or cloud` {
		t.Fatalf("stderr = %q", got)
	}
}

// TestSecondSignalForcesTheExit holds a submission in flight (the Prefect API
// never answers the Submitted update), so the first SIGTERM's graceful stop
// waits for it; the second SIGTERM must end the process at once.
func TestSecondSignalForcesTheExit(t *testing.T) {
	ns := cluster.Namespace(t)
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(em.Close)
	stuck := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	api := em.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"operationName":"SetFlowRunStates"`)) {
			select {
			case stuck <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		api.ServeHTTP(w, r)
	}))
	defer srv.Close()
	_, _ = em.AddFlowRun(emulator.FlowRunSpec{Labels: []string{"e2e"}})

	p := startAgentProcess(t, prefectAgent(ns, "--api", srv.URL))
	select {
	case <-stuck:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("the agent never tried to mark the run Submitted; log:\n%s", p.stderr.String())
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		t.Fatalf("the first SIGTERM ended the agent at once (%v); it should wait for the submission in flight", err)
	case <-time.After(time.Second):
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("after the second SIGTERM: %v, want exit status 1", err)
		}
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatal("a second SIGTERM did not force the exit")
	}
	if !strings.Contains(p.stderr.String(), "Received a second terminated: exiting without waiting for the graceful stop.") {
		t.Errorf("the forced exit is not explained on stderr:\n%s", p.stderr.String())
	}
}
