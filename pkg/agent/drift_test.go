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
	families, err := ra.agent.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "prefect_agent_drift_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
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
	ra := e.start("", func(c *Config) {
		managed(false)(c)
		c.Manage.FinishedRunGrace, c.Manage.DriftCheckInterval = 2*time.Second, 200*time.Millisecond
	})
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
