package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

// kubectl runs the test bed's kubectl with the plugin on PATH.
func kubectl(ctx context.Context, env []string, args ...string) *exec.Cmd {
	path, _ := testbed.Tool("kubectl")
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"), "KUBECONFIG="+cluster.Kubeconfig), env...)
	return cmd
}

func TestAgentStartAsKubectlPlugin(t *testing.T) {
	em, srv := startEmulator(t)
	ns := cluster.Namespace(t)
	run, _ := em.AddFlowRun(emulator.FlowRunSpec{Labels: []string{"e2e"}})

	p := startAgentProcess(t, kubectl(context.Background(), []string{"PREFECT__CLOUD__AGENT__LABELS=[\"e2e\"]", "PREFECT__BACKEND=server"},
		"prefect", "agent", "start", "-n", ns, "--api", srv.URL, "--agent-name", "e2e-agent"))
	p.waitForJob(t, "`kubectl prefect agent start`", ns, run.ID)
	p.stopWithSIGTERM(t, "the agent")
	log := p.stderr.String()
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
