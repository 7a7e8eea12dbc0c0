package agent

import (
	"context"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
)

// TestRunsOfOtherLabelsDoNotStarveTheAgent: 100 late runs of a label no agent
// serves sit ahead of 50 runs of the agent's label. Server's
// get_runs_in_queue takes the 75 oldest due runs before applying the label
// rule, so it gives this agent none of its runs, ever; the agent's own
// query finds them all.
func TestRunsOfOtherLabelsDoNotStarveTheAgent(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{})
	late := time.Now().Add(-time.Hour)
	for i := range 100 {
		e.schedule(emulator.FlowRunSpec{Labels: []string{"nobody"}, ScheduledStartTime: late.Add(time.Duration(i) * time.Second)})
	}
	mine := e.scheduleMany(50, func() emulator.FlowRunSpec {
		spec := suspendedRun(t)
		spec.Labels = []string{"k8s"}
		spec.ScheduledStartTime = time.Now().Add(-time.Minute)
		return spec
	})
	// The premise: what Server's queue hands an agent of this label.
	c := newClient(e.api, "")
	tenant, err := c.ResolveTenant(context.Background(), "server")
	if err != nil {
		t.Fatal(err)
	}
	queued, err := c.RunsInQueue(context.Background(), tenant, []string{"k8s"}, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(queued) != 0 {
		t.Fatalf("get_runs_in_queue hands an agent of this label %d runs; Server's gives none here", len(queued))
	}

	began := time.Now()
	ra := e.start("", func(c *Config) { c.Labels = []string{"k8s"}; c.Job.Labels = c.Labels })
	got := e.waitExactlyOnce(mine, 10*time.Second, e.ns)
	t.Logf("%s in %s", got, time.Since(began).Round(time.Millisecond))
	ra.halt(t)
	if got.submitted != len(mine) {
		t.Fatalf("%s: want all %d Submitted", got, len(mine))
	}
	if n := e.em.Requests()["GetRunsInQueue"]; n == 0 {
		t.Fatalf("get_runs_in_queue was never called: Server would not record the agent's last_queried")
	}
	for _, r := range e.em.FlowRuns() {
		if r.State != "Scheduled" && len(r.Labels) == 1 && r.Labels[0] == "nobody" {
			t.Fatalf("run %s of another label was taken: %s", r.ID, r.State)
		}
	}
}
