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

// killableAgent runs `kubectl-prefect agent start` straight from the binary,
// with extra flags after the usual ones.
func killableAgent(api, ns string, extra ...string) *exec.Cmd {
	args := append([]string{"agent", "start", "-n", ns, "--api", api, "--agent-name", "killed-agent", "--delete-finished-jobs=false"}, extra...)
	cmd := exec.Command(filepath.Join(binDir, "kubectl-prefect"), args...)
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

// addSuspendedRuns schedules n runs whose Jobs are suspended and returns
// their ids in the order they were added.
func addSuspendedRuns(t *testing.T, em *emulator.Emulator, n int) []string {
	t.Helper()
	config := suspendedRunConfig(t)
	ids := make([]string, 0, n)
	for range n {
		run, err := em.AddFlowRun(emulator.FlowRunSpec{RunConfig: config})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	return ids
}

// exactlyOnce tallies runs against their Jobs: one Job and Submitted, Failed
// with a reason, stranded (Submitted without a Job), duplicated, or neither yet.
type exactlyOnce struct{ submitted, failed, stranded, duplicates, pending int }

// jobsByRun counts the Jobs of each flow run in ns; nil when the list fails.
func jobsByRun(t *testing.T, ns string) map[string]int {
	t.Helper()
	list, err := cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Logf("listing Jobs: %v", err)
		return nil
	}
	jobs := map[string]int{}
	for _, j := range list.Items {
		jobs[j.Labels[manifest.LabelFlowRunID]]++
	}
	return jobs
}

func tallyRuns(t *testing.T, em *emulator.Emulator, ns string, ids []string) exactlyOnce {
	t.Helper()
	out, _ := tallyRunsAndJobs(t, em, ns, ids)
	return out
}

// tallyRunsAndJobs is tallyRuns with the Job count of each run.
func tallyRunsAndJobs(t *testing.T, em *emulator.Emulator, ns string, ids []string) (exactlyOnce, map[string]int) {
	t.Helper()
	jobs := jobsByRun(t, ns)
	if jobs == nil {
		return exactlyOnce{pending: len(ids)}, nil
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
	return out, jobs
}

// killAfterDeploys waits for n more "Deploying flow run" lines from p (each
// a run the agent started to submit), then SIGKILLs it.
func (p *agentProcess) killAfterDeploys(t *testing.T, n int) {
	t.Helper()
	p.killAfter(t, p.deploys, n, "Deploying flow run")
}

// killAfterJobs waits for n more "Created Job for flow run" lines from p,
// then SIGKILLs it.
func (p *agentProcess) killAfterJobs(t *testing.T, n int) {
	t.Helper()
	p.killAfter(t, p.created, n, "Created Job for flow run")
}

// killAfter waits for n more of p's lines that lines counts, then SIGKILLs p.
func (p *agentProcess) killAfter(t *testing.T, lines <-chan struct{}, n int, what string) {
	t.Helper()
	for seen := 0; seen < n; {
		select {
		case <-lines:
			seen++
		case err := <-p.exited:
			t.Fatalf("the agent exited by itself (%v):\n%s", err, p.stderr.String())
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			t.Fatalf("%d of %d %q lines, then none for 30 s:\n%s", seen, n, what, tail(p.stderr.String(), 40))
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// stopAtTheEnd stops p with SIGTERM when the test ends (SIGKILL after a minute).
func (p *agentProcess) stopAtTheEnd(t *testing.T) {
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			_ = p.cmd.Process.Kill()
		}
	})
}

// restartOutcome is what awaitExactlyOnce saw after a restart.
type restartOutcome struct {
	final exactlyOnce
	// unstranded is when no run was stranded any more, since the restart.
	unstranded time.Duration
	// hadJob is when each watched run first had exactly one Job.
	hadJob map[string]time.Duration
}

// awaitExactlyOnce polls every 250 ms until every run of ids has exactly one
// Job and is Submitted, or is Failed with a reason (none stranded, pending
// or duplicated), and fails if that takes longer than within or p exits.
func awaitExactlyOnce(t *testing.T, em *emulator.Emulator, ns string, ids []string, p *agentProcess, restarted time.Time, within time.Duration, watch []string) restartOutcome {
	t.Helper()
	out := restartOutcome{hadJob: map[string]time.Duration{}}
	deadline := restarted.Add(within)
	for {
		c, jobs := tallyRunsAndJobs(t, em, ns, ids)
		since := time.Since(restarted)
		for _, id := range watch {
			if _, seen := out.hadJob[id]; !seen && jobs[id] == 1 {
				out.hadJob[id] = since
			}
		}
		if c.stranded == 0 && out.unstranded == 0 {
			out.unstranded = since
		}
		if c.stranded == 0 && c.duplicates == 0 && c.pending == 0 {
			out.final = c
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("not exactly once %s after the restart: %+v; agent log:\n%s", within, c, tail(p.stderr.String(), 40))
		}
		select {
		case err := <-p.exited:
			t.Fatalf("the restarted agent exited (%v):\n%s", err, tail(p.stderr.String(), 40))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func TestAgentProcessSIGKILLedMidSubmission(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	const runs, kills = 300, 30
	em, srv := startEmulator(t)
	ns := cluster.Namespace(t)
	ids := addSuspendedRuns(t, em, runs)
	rng := rand.New(rand.NewPCG(42, 7))
	strandedByKills, killed := 0, 0
	for killed < kills {
		startAgentProcess(t, killableAgent(srv.URL, ns)).killAfterDeploys(t, 1+rng.IntN(8))
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
	final.stopAtTheEnd(t)
	got := awaitExactlyOnce(t, em, ns, ids, final, restarted, 3*time.Minute, nil)
	t.Logf("SIGKILLed %d times: %d runs, %d one Job and Submitted, %d Failed with a reason, 0 stranded, 0 duplicates; "+
		"stranded when the last agent started %d (at most %d after a kill), recovered %s after the restart",
		killed, runs, got.final.submitted, got.final.failed, before.stranded, strandedByKills, got.unstranded.Round(100*time.Millisecond))
	if strandedByKills == 0 && before.stranded == 0 {
		t.Logf("no kill landed between a Submitted mark and its Job this time")
	}
	if got.unstranded > 30*time.Second {
		t.Fatalf("stranded runs recovered %s after the restart, want within 30 s", got.unstranded)
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
