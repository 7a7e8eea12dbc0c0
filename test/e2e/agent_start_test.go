package e2e

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect/emulator"
)

// kubectl runs the test bed's kubectl with the plugin on PATH.
func kubectl(ctx context.Context, env []string, args ...string) *exec.Cmd {
	path, _ := testbed.Tool("kubectl")
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"), "KUBECONFIG="+cluster.Kubeconfig), env...)
	return cmd
}

func TestAgentStartAsKubectlPlugin(t *testing.T) {
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em.Handler())
	defer srv.Close()
	ns := cluster.Namespace(t)
	run, _ := em.AddFlowRun(emulator.FlowRunSpec{Labels: []string{"e2e"}})

	var stderr bytes.Buffer
	cmd := kubectl(context.Background(), []string{"PREFECT__CLOUD__AGENT__LABELS=[\"e2e\"]", "PREFECT__BACKEND=server"},
		"prefect", "agent", "start", "-n", ns, "--api", srv.URL, "--agent-name", "e2e-agent")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	err = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		jobs, err := cluster.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.ID})
		return err == nil && len(jobs.Items) == 1, nil
	})
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("no Job from `kubectl prefect agent start`; its log:\n%s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the agent exited with %v after SIGTERM, want 0; log:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the agent did not stop after SIGTERM")
	}
	log := stderr.String()
	for _, want := range []string{`"Agent registered" agent="e2e-agent"`, `labels=["e2e"]`, `"Created Job for flow run"`, `"Agent stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("agent log lacks %s:\n%s", want, log)
		}
	}
	agents := em.Agents()
	if len(agents) != 1 || agents[0].Name != "e2e-agent" || agents[0].Type != "KubernetesAgent" {
		t.Errorf("registered agents: %+v", agents)
	}
}

func TestAgentStartBadFlagExitsNonZero(t *testing.T) {
	cluster.Require(t)
	var stderr bytes.Buffer
	cmd := kubectl(context.Background(), nil, "prefect", "agent", "start", "--backend", "hosted")
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatal("a bad --backend should make the command fail")
	}
	if got := strings.TrimSpace(stderr.String()); got != `error: --backend "hosted": expected server or cloud` {
		t.Fatalf("stderr = %q", got)
	}
}
