package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// Tests in this file run Prefect 1.4.1's own flow runner in the Jobs the
// agent creates: the test bed's pod executor runs each flow container's
// command (`prefect execute flow-run`) against the emulator.

// flowRunnerWait bounds how long a real flow may take: a runner process
// starts in a few seconds, but the machine is shared.
const flowRunnerWait = 3 * time.Minute

// runFlow registers a test flow (a module of test/flows/testflows) and
// schedules a run of it, in a KubernetesRun on the executor's image.
func (e *env) runFlow(module string, runConfigExtra map[string]any, tenantID string) emulator.FlowRun {
	e.t.Helper()
	serialized, err := testbed.SerializedFlow(module)
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := e.em.RegisterFlow(serialized, tenantID)
	if err != nil {
		e.t.Fatal(err)
	}
	rc := map[string]any{"type": "KubernetesRun", "image": testbed.ImagePrefect}
	for k, v := range runConfigExtra {
		rc[k] = v
	}
	run, err := e.em.CreateFlowRun(emulator.RunOfFlow{FlowID: f.ID, Labels: []string{}, RunConfig: runConfig(e.t, rc)})
	if err != nil {
		e.t.Fatal(err)
	}
	return run
}

// waitFinal waits up to flowRunnerWait for a run to reach one of the states.
func (e *env) waitFinal(id string, states ...string) emulator.FlowRun {
	e.t.Helper()
	var run emulator.FlowRun
	deadline := time.Now().Add(flowRunnerWait)
	for {
		run, _ = e.em.FlowRun(id)
		for _, s := range states {
			if run.State == s {
				return run
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("flow run %s (%s) did not reach %v within %s; it is %s, states %s, logs:\n%s", id, run.Flow.Name, states, flowRunnerWait, run.State, stateTypes(run), runLog(run))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLog waits for a line of a level containing text in the run's log: the
// runner sends its lines in batches, every 5 s and when it exits.
func (e *env) waitLog(id, level, text string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		run, _ := e.em.FlowRun(id)
		if contains(logsAt(run, level), text) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Errorf("the run's log has no %s line containing %q; it has:\n%s", level, text, runLog(run))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stateTypes(run emulator.FlowRun) string {
	var out []string
	for _, s := range run.States {
		out = append(out, s.Type)
	}
	return strings.Join(out, " > ")
}

func runLog(run emulator.FlowRun) string {
	var b strings.Builder
	for _, l := range run.Logs {
		b.WriteString("  " + l.Level + " " + l.Name + ": " + l.Message + "\n")
	}
	return b.String()
}

func taskRunStates(e *env, run emulator.FlowRun) map[string]string {
	out := map[string]string{}
	for _, tr := range run.TaskRuns {
		d, _ := e.em.TaskRunDetails(tr.ID)
		out[d.TaskSlug] = tr.State
	}
	return out
}

// TestRealFlowRunsEndAsTheirRunnerSays runs four flows at once through the
// agent on the Cloud backend, with a tenant and the API key read from the
// --key-secret-name Secret: three tasks that succeed, a task that raises, a
// process that exits 3 and one that allocates past its memory limit.
func TestRealFlowRunsEndAsTheirRunnerSays(t *testing.T) {
	cluster.RequireFlowRunner(t)
	tenant := emulator.Tenant{ID: "3c1f0e8a-5b7d-4c2e-9f10-2a3b4c5d6e7f", Name: "team", Slug: "team"}
	const key = "pcu_RUNNERKEY0123456789"
	e := newEnv(t, emulator.Config{Backend: emulator.Cloud, Tenants: []emulator.Tenant{tenant}, APIKeys: map[string]string{key: tenant.ID}})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "prefect-agent", Namespace: e.ns}, StringData: map[string]string{manifest.APIKeySecretKey: key}}
	if _, err := cluster.Client.CoreV1().Secrets(e.ns).Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ok := e.runFlow("testflows.three_tasks", nil, tenant.ID)
	raises := e.runFlow("testflows.raises", nil, tenant.ID)
	exit3 := e.runFlow("testflows.hard_exit", nil, tenant.ID)
	hog := e.runFlow("testflows.memory_hog", map[string]any{"memory_limit": "400Mi"}, tenant.ID)
	ra := e.start(key, func(c *Config) {
		c.Backend, c.Job.Backend, c.Job.APIKey = "cloud", "cloud", ""
		c.Job.APIKeySecret, c.Job.TenantID = "prefect-agent", tenant.ID
		c.Manage.DeleteFinishedJobs = true
	})

	got := e.waitFinal(ok.ID, "Success", "Failed")
	if got.State != "Success" {
		t.Errorf("three-task flow ended %s (%s), logs:\n%s", got.State, stateTypes(got), runLog(got))
	}
	if want := "Scheduled > Submitted > Running > Success"; stateTypes(got) != want {
		t.Errorf("three-task flow went %s, want %s", stateTypes(got), want)
	}
	if trs := taskRunStates(e, got); len(trs) != 3 || trs["extract-1"] != "Success" || trs["transform-1"] != "Success" || trs["load-1"] != "Success" {
		t.Errorf("three-task flow's task runs: %v, want extract-1, transform-1 and load-1 Success", trs)
	}
	for _, line := range []string{"extract: read 3 rows", "transform: doubled 3 rows", "load: total is 12", "Flow run SUCCESS: all reference tasks succeeded"} {
		e.waitLog(ok.ID, "INFO", line)
	}

	got = e.waitFinal(raises.ID, "Success", "Failed")
	if got.State != "Failed" || !strings.Contains(got.StateMessage, "Some reference tasks failed") {
		t.Errorf("raising flow ended %s %q, want Failed by its runner", got.State, got.StateMessage)
	}
	if trs := taskRunStates(e, got); trs["broken-1"] != "Failed" || trs["fine-1"] != "Success" {
		t.Errorf("raising flow's task runs: %v", trs)
	}
	e.waitLog(raises.ID, "ERROR", "this task always fails")

	got = e.waitFinal(exit3.ID, "Failed", "Success")
	if errs := agentErrors(got); len(errs) != 1 || !strings.Contains(errs[0], "exit code 3") {
		t.Errorf("hard exit: the agent's ERROR lines %q, want one naming exit code 3; log:\n%s", errs, runLog(got))
	}
	got = e.waitFinal(hog.ID, "Failed", "Success")
	if errs := agentErrors(got); len(errs) != 1 || !strings.Contains(errs[0], "OOMKilled") {
		t.Errorf("memory hog: the agent's ERROR lines %q, want one naming OOMKilled; log:\n%s", errs, runLog(got))
	}

	// The raising flow's Job completes after its runner set Failed; the agent
	// deletes it once it has judged it, and adds no line to a run its runner ended.
	testbed.Eventually(t, "the agent to delete the raising flow's finished Job", func() bool {
		return len(e.jobsFor(raises.ID)) == 0
	})
	ra.halt(t)
	run, _ := e.em.FlowRun(raises.ID)
	if errs := agentErrors(run); len(errs) != 0 {
		t.Errorf("the agent added lines to a run its runner failed: %q", errs)
	}
	for _, r := range e.em.FlowRuns() {
		for _, l := range r.Logs {
			if strings.Contains(l.Message, key) {
				t.Errorf("the API key is in a run log line: %q", l.Message)
			}
		}
	}
}

// agentErrors are the run's ERROR lines the agent wrote, under its name (the
// runner's lines carry its loggers' names: prefect.CloudFlowRunner, ...).
func agentErrors(run emulator.FlowRun) []string {
	var out []string
	for _, l := range run.Logs {
		if l.Level == "ERROR" && l.Name == "test-agent" {
			out = append(out, l.Message)
		}
	}
	return out
}
