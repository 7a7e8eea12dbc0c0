package agent

import (
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

// driftCount reads prefect_agent_drift_total for one kind.
func driftCount(t *testing.T, ra *runningAgent, kind string) float64 {
	t.Helper()
	return counterSum(t, ra, "prefect_agent_drift_total", "kind", kind)
}

// startWithGrace starts an agent whose finished-run grace is grace, with
// checks for ended runs every 200 ms.
func (e *env) startWithGrace(grace time.Duration) *runningAgent {
	return e.start("", func(c *Config) {
		managed(false)(c)
		c.Manage.FinishedRunGrace, c.Manage.EndedCheckInterval = grace, 200*time.Millisecond
	})
}

// TestRunCancelledByHandLosesItsJob: with the default check intervals, a run
// set Cancelled by hand while its pod runs has its Job deleted within 30 s.
func TestRunCancelledByHandLosesItsJob(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageRun, nil))
	policy := testPolicy
	e.start("", func(c *Config) { c.Manage = jobs.Config{DeleteFinishedJobs: true, Pending: &policy} })
	e.runningPod(run.ID)
	if _, err := e.em.SetFlowRunState(run.ID, "Cancelled", "cancelled by hand in the UI"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.waitJobGone(run.ID)
	took := time.Since(start)
	t.Logf("Job deleted %s after the run was cancelled", took.Round(100*time.Millisecond))
	if took > 30*time.Second {
		t.Fatalf("the Job of a cancelled run was deleted after %s, want within 30 s", took)
	}
}

// TestRunFinishedByHandLosesItsJobAfterTheGrace: a run set Success by hand
// while its pod runs keeps its Job for the grace, then loses it, with a
// WARNING on the run and the drift counted.
func TestRunFinishedByHandLosesItsJobAfterTheGrace(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageRun, nil))
	ra := e.startWithGrace(2 * time.Second)
	e.runningPod(run.ID)
	if _, err := e.em.SetFlowRunState(run.ID, "Success", "set by hand"); err != nil {
		t.Fatal(err)
	}
	set := time.Now()
	e.warned(run.ID, "is Success in Prefect but its pod still ran")
	e.waitJobGone(run.ID)
	if took := time.Since(set); took < 2*time.Second {
		t.Fatalf("the Job was deleted %s after the run finished, before the 2 s grace", took)
	}
	if n := driftCount(t, ra, jobs.DriftRunFinished); n != 1 {
		t.Fatalf("prefect_agent_drift_total{kind=%q} = %v, want 1", jobs.DriftRunFinished, n)
	}
}

// TestRunFinishedThenRunningAgainKeepsItsJob: a run seen finished while its
// pod runs, then set Running again within the grace (its state corrected by
// hand), keeps its Job: the states are read once more before a deletion.
// The grace leaves a loaded machine seconds to set the state back.
func TestRunFinishedThenRunningAgainKeepsItsJob(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageRun, nil))
	ra := e.startWithGrace(8 * time.Second)
	e.runningPod(run.ID)
	if _, err := e.em.SetFlowRunState(run.ID, "Success", "set by hand"); err != nil {
		t.Fatal(err)
	}
	// Two checks after the change: the agent has seen the run finished.
	e.waitRequests("EndedRunsSince", 2, nil)
	if _, err := e.em.SetFlowRunState(run.ID, "Running", "set back by hand"); err != nil {
		t.Fatal(err)
	}
	// The grace ends: the agent reads the run's state again before deleting.
	e.waitRequests("FlowRunStates", 1, func() bool { return len(e.jobsFor(run.ID)) == 0 })
	e.waitRequests("EndedRunsSince", 2, func() bool { return len(e.jobsFor(run.ID)) == 0 })
	got, _ := e.em.FlowRun(run.ID)
	if jobs := e.jobsFor(run.ID); len(jobs) != 1 || jobs[0].DeletionTimestamp != nil {
		t.Fatalf("the Job of a run that is Running again was deleted: %d Jobs; warnings %q", len(jobs), logsAt(got, "WARNING"))
	}
	if contains(logsAt(got, "WARNING"), "in Prefect but its pod still ran") {
		t.Fatalf("warnings %q", logsAt(got, "WARNING"))
	}
	if n := driftCount(t, ra, jobs.DriftRunFinished); n != 0 {
		t.Fatalf("prefect_agent_drift_total{kind=%q} = %v, want 0", jobs.DriftRunFinished, n)
	}
}
