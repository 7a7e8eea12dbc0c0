package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

// TestRealRunnerCancels sets two runs Cancelling: one whose runner is in the
// middle of a long task, which Prefect's runner notices (it checks every
// 15 s) and ends Cancelled itself while the agent leaves its Job alone; and
// one whose pod cannot be scheduled, which the agent cancels.
func TestRealRunnerCancels(t *testing.T) {
	cluster.RequireFlowRunner(t)
	t.Parallel()
	e := newEnv(t, emulator.Config{})
	running := e.runFlow("testflows.sleeps", nil, "")
	stuck := e.runFlow("testflows.three_tasks", map[string]any{"cpu_request": testbed.UnschedulableCPU}, "")
	// The unschedulable pod waits (testPolicy would give up on it in 3 s).
	e.start("", func(c *Config) { managed(false)(c); c.Manage.Pending.UnschedulableTimeout = time.Hour })

	e.waitTaskRun(running.ID, "nap-1", "Running")
	e.waitSubmitted(stuck.ID)
	for _, id := range []string{running.ID, stuck.ID} {
		if _, err := e.em.SetFlowRunState(id, "Cancelling", "Cancelled by the test"); err != nil {
			t.Fatal(err)
		}
	}

	// The agent sets the run Cancelled, then deletes its Job and says so.
	e.waitFinal(stuck.ID, "Cancelled")
	e.waitJobGone(stuck.ID)
	e.waitLog(stuck.ID, "INFO", "Deleted Job")

	got := e.waitFinal(running.ID, "Cancelled", "Failed", "Success")
	if got.State != "Cancelled" {
		t.Fatalf("the running flow ended %s, want Cancelled by its runner; log:\n%s", got.State, runLog(got))
	}
	// The runner's own Cancelled state ("Flow run is cancelled",
	// engine/cloud/flow_runner.py). Its last log lines may never arrive: the
	// agent deletes a Cancelled run's Job, which can kill the runner before
	// it sends its final batch.
	if got.StateMessage != "Flow run is cancelled" {
		t.Errorf("the Cancelled state says %q, want the runner's \"Flow run is cancelled\"", got.StateMessage)
	}
	// The runner cancelled it: the agent did not delete the Job of a flow that
	// had started, nor set the Cancelled state (it may delete the Job once
	// the run is Cancelled).
	if contains(logsAt(got, "INFO"), "before its flow started") || strings.Contains(got.StateMessage, "the agent deleted its Job") {
		t.Errorf("the agent cancelled a running flow itself: %q, log:\n%s", got.StateMessage, runLog(got))
	}
	if errs := agentErrors(got); len(errs) != 0 {
		t.Errorf("the agent wrote errors to a run its runner cancelled: %q", errs)
	}
}

// waitTaskRun waits for the task run of a task (by slug) to be in a state.
func (e *env) waitTaskRun(runID, slug, state string) {
	e.t.Helper()
	var got map[string]string
	for deadline := time.Now().Add(flowRunnerWait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		run, _ := e.em.FlowRun(runID)
		if got = taskRunStates(e, run); got[slug] == state {
			return
		}
	}
	run, _ := e.em.FlowRun(runID)
	e.t.Fatalf("task run %s of %s never was %s: task runs %v, flow run %s, log:\n%s", slug, runID, state, got, run.State, runLog(run))
}
