package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// startEmulator serves a fresh Prefect emulator until the test ends.
func startEmulator(t *testing.T) (*emulator.Emulator, *httptest.Server) {
	t.Helper()
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(em.Close)
	srv := httptest.NewServer(em.Handler())
	t.Cleanup(srv.Close)
	return em, srv
}

// agentProcess is one started agent process (either binary, or kubectl
// running the plugin).
type agentProcess struct {
	cmd      *exec.Cmd
	deploys  chan struct{} // one per "Deploying flow run" line
	created  chan struct{} // one per "Created Job for flow run" line
	exited   chan error
	stderr   *testbed.SyncBuffer
	finished chan struct{}
}

// startAgentProcess starts cmd and keeps its stderr.
func startAgentProcess(t *testing.T, cmd *exec.Cmd) *agentProcess {
	t.Helper()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProcess{cmd: cmd, deploys: make(chan struct{}, 1000), created: make(chan struct{}, 1000), exited: make(chan error, 1), stderr: &testbed.SyncBuffer{}, finished: make(chan struct{})}
	go func() {
		defer close(p.finished)
		lines := bufio.NewScanner(io.TeeReader(pipe, p.stderr))
		lines.Buffer(make([]byte, 1<<20), 1<<20)
		for lines.Scan() {
			switch line := lines.Text(); {
			case strings.Contains(line, `"Deploying flow run"`):
				p.deploys <- struct{}{}
			case strings.Contains(line, `"Created Job for flow run"`):
				p.created <- struct{}{}
			}
		}
	}()
	go func() { <-p.finished; p.exited <- cmd.Wait() }()
	return p
}

// waitForJob waits up to 30 s for the one Job of the flow run; name says
// which agent failed to make it.
func (p *agentProcess) waitForJob(t *testing.T, name, ns, runID string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		jobs, err := cluster.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + runID})
		return err == nil && len(jobs.Items) == 1, nil
	})
	if err != nil {
		_ = p.cmd.Process.Kill()
		t.Fatalf("no Job from %s; its log:\n%s", name, p.stderr.String())
	}
}

// stopWithSIGTERM sends SIGTERM and wants exit status 0 within 20 s.
func (p *agentProcess) stopWithSIGTERM(t *testing.T, name string) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want 0; log:\n%s", name, err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("%s did not stop after SIGTERM", name)
	}
}
