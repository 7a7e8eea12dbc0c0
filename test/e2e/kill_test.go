package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// killableAgent runs `kubectl-prefect agent start` straight from the binary.
func killableAgent(api, ns string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "kubectl-prefect"), "agent", "start", "-n", ns, "--api", api,
		"--agent-name", "killed-agent", "--delete-finished-jobs=false")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "PREFECT__BACKEND=server")
	return cmd
}

// suspendedRunConfig makes the run's Job suspended: no pods for hundreds of runs.
func suspendedRunConfig(t *testing.T) json.RawMessage {
	raw, err := json.Marshal(map[string]any{
		"type": "KubernetesRun",
		"job_template": map[string]any{"apiVersion": "batch/v1", "kind": "Job", "spec": map[string]any{
			"suspend":  true,
			"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "flow"}}}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// exactlyOnce tallies runs against their Jobs: one Job and Submitted, Failed
// with a reason, stranded (Submitted without a Job), duplicated, or neither yet.
type exactlyOnce struct{ submitted, failed, stranded, duplicates, pending int }

func tallyRuns(t *testing.T, em *emulator.Emulator, ns string, ids []string) exactlyOnce {
	t.Helper()
	list, err := cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Logf("listing Jobs: %v", err)
		return exactlyOnce{pending: len(ids)}
	}
	jobs := map[string]int{}
	for _, j := range list.Items {
		jobs[j.Labels[manifest.LabelFlowRunID]]++
	}
	var out exactlyOnce
	for _, id := range ids {
		run, _ := em.FlowRun(id)
		n := jobs[id]
		hasError := false
		for _, l := range run.Logs {
			hasError = hasError || l.Level == "ERROR"
		}
		switch {
		case n > 1:
			out.duplicates++
		case run.State == "Submitted" && n == 1:
			out.submitted++
		case run.State == "Submitted":
			out.stranded++
		case run.State == "Failed" && hasError:
			out.failed++
		default:
			out.pending++
		}
	}
	return out
}

func TestAgentProcessSIGKILLedMidSubmission(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	const runs, kills = 300, 30
	em, srv := startEmulator(t)
	ns := cluster.Namespace(t)
	ids := make([]string, 0, runs)
	for range runs {
		run, err := em.AddFlowRun(emulator.FlowRunSpec{RunConfig: suspendedRunConfig(t)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	rng := rand.New(rand.NewPCG(42, 7))
	strandedByKills, killed := 0, 0
	for killed < kills {
		p := startAgentProcess(t, killableAgent(srv.URL, ns))
		n := 1 + rng.IntN(8)
		for seen := 0; seen < n; {
			select {
			case <-p.deploys:
				seen++
			case err := <-p.exited:
				t.Fatalf("the agent exited by itself (%v):\n%s", err, p.stderr.String())
			case <-time.After(30 * time.Second):
				p.cmd.Process.Kill()
				t.Fatalf("no %d Deploying lines within 30 s (kill %d):\n%s", n, killed+1, p.stderr.String())
			}
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		killed++
		c := tallyRuns(t, em, ns, ids)
		strandedByKills = max(strandedByKills, c.stranded)
		if killed%10 == 0 {
			t.Logf("after %d kills: %+v", killed, c)
		}
	}
	before := tallyRuns(t, em, ns, ids)
	final := startAgentProcess(t, killableAgent(srv.URL, ns))
	restarted := time.Now()
	defer func() {
		_ = final.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-final.exited:
		case <-time.After(time.Minute):
			final.cmd.Process.Kill()
		}
	}()
	var recovery time.Duration
	deadline := restarted.Add(3 * time.Minute)
	for {
		c := tallyRuns(t, em, ns, ids)
		if c.stranded == 0 && recovery == 0 {
			recovery = time.Since(restarted)
		}
		if c.stranded == 0 && c.duplicates == 0 && c.pending == 0 {
			t.Logf("SIGKILLed %d times: %d runs, %d one Job and Submitted, %d Failed with a reason, 0 stranded, 0 duplicates; "+
				"stranded when the last agent started %d (at most %d after a kill), recovered %s after the restart",
				killed, runs, c.submitted, c.failed, before.stranded, strandedByKills, recovery.Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not exactly once 3 min after the last restart: %+v; agent log:\n%s", c, tail(final.stderr.String(), 40))
		}
		select {
		case err := <-final.exited:
			t.Fatalf("the last agent exited (%v):\n%s", err, tail(final.stderr.String(), 40))
		case <-time.After(250 * time.Millisecond):
		}
	}
	if strandedByKills == 0 && before.stranded == 0 {
		t.Logf("no kill landed between a Submitted mark and its Job this time")
	}
	if recovery > 30*time.Second {
		t.Fatalf("stranded runs recovered %s after the restart, want within 30 s", recovery)
	}
	if !strings.Contains(final.stderr.String(), "Recovering flow run") && before.stranded > 0 {
		t.Fatalf("stranded runs were not recovered by the recovery:\n%s", tail(final.stderr.String(), 40))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintln(strings.Join(lines, "\n"))
}
