package emulator

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// TestDueRunsQueryAppliesTheLabelRuleBeforeTheLimit checks the agent's own
// search (pkg/prefect/queue.graphql) as the emulator serves Hasura's
// flow_run root: labels contained in the agent's, unlabelled runs only for an
// unlabelled agent, oldest first with Running runs (NULL start) last, the
// skipped ids left out, then the limit.
func TestDueRunsQueryAppliesTheLabelRuleBeforeTheLimit(t *testing.T) {
	em, srv := start(t, Config{})
	base := time.Now().Add(-time.Hour).UTC()
	for i := range 40 { // older than every run below, of a label no agent has
		if _, err := em.AddFlowRun(FlowRunSpec{Labels: []string{"gpu"}, ScheduledStartTime: base.Add(time.Duration(i) * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	unlabelled, _ := em.AddFlowRun(FlowRunSpec{ScheduledStartTime: base})
	var mine []string
	for i := range 5 {
		labels := []string{"k8s"}
		if i%2 == 1 {
			labels = []string{"k8s", "prod"}
		}
		r, _ := em.AddFlowRun(FlowRunSpec{Labels: labels, ScheduledStartTime: base.Add(time.Duration(10-i) * time.Minute)})
		mine = append([]string{r.ID}, mine...) // later added, earlier due
	}
	running, _ := em.AddFlowRun(FlowRunSpec{Labels: []string{"k8s"}, State: "Running", TaskRuns: []TaskRunSpec{{State: "Running"}}})
	if _, err := em.SetTaskRunState(running.TaskRuns[0].ID, "Retrying", "retry", base); err != nil {
		t.Fatal(err)
	}
	_, _ = em.AddFlowRun(FlowRunSpec{Labels: []string{"k8s"}, ScheduledStartTime: time.Now().Add(time.Hour)}) // not due

	c := fastClient(srv, "")
	ctx := context.Background()
	tenant, err := c.ResolveTenant(ctx, "server")
	if err != nil {
		t.Fatal(err)
	}
	q := prefect.DueRunsQuery{TenantID: tenant, Labels: []string{"k8s", "prod"}, Before: time.Now().Add(10 * time.Second), RetryBefore: time.Now(), Limit: 25}
	got, err := c.DueRuns(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(mine), running.ID); !slices.Equal(got, want) {
		t.Fatalf("labelled agent got %v, want its runs oldest first then the Running run %v", got, want)
	}
	q.Skip, q.Limit = mine[:2], 2
	if got, _ = c.DueRuns(ctx, q); !slices.Equal(got, mine[2:4]) {
		t.Fatalf("with two skipped and a limit of 2: %v, want %v", got, mine[2:4])
	}
	q = prefect.DueRunsQuery{TenantID: tenant, Before: time.Now().Add(10 * time.Second), RetryBefore: time.Now(), Limit: 25}
	if got, _ = c.DueRuns(ctx, q); !slices.Equal(got, []string{unlabelled.ID}) {
		t.Fatalf("unlabelled agent got %v, want only the unlabelled run %s", got, unlabelled.ID)
	}
}
