package emulator

import (
	"context"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// TestStrandedCandidatesArePagedOldestFirstWithoutJobLines checks recovery's
// candidate query (pkg/prefect/operations.graphql StrandedFlowRunCandidates)
// as the emulator serves Hasura's flow_run root: only this agent's Submitted
// runs marked inside the window, none with a "Submitted for execution: Job"
// line written since the window began (_not over the logs relationship; an
// older line is an earlier submission's), oldest mark first then id, every
// one exactly once over pages of 3, also when marks share a timestamp and
// when a candidate leaves the set between two pages.
func TestStrandedCandidatesArePagedOldestFirstWithoutJobLines(t *testing.T) {
	clock := newTestClock()
	em, srv := start(t, Config{Now: clock.Now})
	ctx := context.Background()
	c := fastClient(srv, "")
	tenant, err := c.ResolveTenant(ctx, "server")
	if err != nil {
		t.Fatal(err)
	}
	agentID, err := c.RegisterAgent(ctx, tenant, "recovering", "KubernetesAgent", nil)
	if err != nil {
		t.Fatal(err)
	}
	other := fastClient(srv, "")
	_, err = other.RegisterAgent(ctx, tenant, "other", "KubernetesAgent", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetAgentID(agentID)
	mark := func(client *prefect.Client) string {
		t.Helper()
		run, err := em.AddFlowRun(FlowRunSpec{})
		if err != nil {
			t.Fatal(err)
		}
		v := run.Version
		if err := client.SetFlowRunState(ctx, run.ID, &v, prefect.SubmittedState("Submitted for execution", run.SerializedState, prefect.Submission{Token: run.ID})); err != nil {
			t.Fatal(err)
		}
		return run.ID
	}
	jobLine := func(id, message string) {
		t.Helper()
		if err := c.WriteRunLogs(ctx, prefect.RunLog{FlowRunID: id, Name: "agent", Level: "INFO", Message: message}); err != nil {
			t.Fatal(err)
		}
	}

	tooOld := mark(c)
	clock.Add(time.Minute)
	windowStart := clock.Now()
	var want []string // in the order they must come: by mark time, then id
	for range 3 {     // three marks at each of three instants: ties broken by id
		var same []string
		for range 3 {
			same = append(same, mark(c))
		}
		sort.Strings(same)
		want = append(want, same...)
		clock.Add(time.Second)
	}
	logged := mark(c)
	jobLine(logged, "Submitted for execution: Job prefect-job-0123456789ab")
	otherLine := mark(c) // a line that names no Job does not count
	jobLine(otherLine, "Deploying flow run")
	want = append(want, otherLine)
	foreign := mark(other)
	clock.Add(time.Second)
	moved := mark(c)
	if _, err := em.SetFlowRunState(moved, "Running", "started"); err != nil {
		t.Fatal(err)
	}
	last := mark(c)
	// Marked again after Lazarus rescheduled it: its Job line, older than
	// the window, is the earlier submission's.
	again := mark(c)
	if err := c.WriteRunLogs(ctx, prefect.RunLog{FlowRunID: again, Name: "agent", Level: "INFO", Message: "Submitted for execution: Job prefect-job-bbbbbbbbbbbb", Time: windowStart.Add(-2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	same := []string{last, again}
	sort.Strings(same)
	want = append(want, same...)
	clock.Add(time.Minute)
	tooNew := mark(c)
	q := prefect.StrandedQuery{AgentID: agentID, SubmittedAfter: windowStart, SubmittedBefore: clock.Now().Add(-30 * time.Second), PageSize: 3}

	var got []string
	pages, err := c.EachStrandedCandidate(ctx, q, func(s prefect.StrandedCandidate) bool {
		if by, ok := prefect.SubmittedBy(s.SerializedState); !ok || by.Token != s.ID {
			t.Errorf("candidate %s carries no mark: %s", s.ID, s.SerializedState)
		}
		got = append(got, s.ID)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("candidates %v,\nwant %v (left out: older %s, newer %s, logged %s, foreign %s, moved %s)", got, want, tooOld, tooNew, logged, foreign, moved)
	}
	if pages != 5 { // 12 candidates in pages of 3, then an empty one
		t.Fatalf("%d requests for 12 candidates in pages of 3, want 5", pages)
	}

	// A candidate recovered while the pass pages (its Job line written) moves
	// no other one out of the next page.
	got = got[:0]
	_, err = c.EachStrandedCandidate(ctx, q, func(s prefect.StrandedCandidate) bool {
		got = append(got, s.ID)
		if len(got) == 2 {
			jobLine(want[0], "Recovered after the agent stopped. Submitted for execution: Job prefect-job-aaaaaaaaaaaa")
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("with a candidate recovered between pages: %v, want %v", got, want)
	}
	got = got[:0]
	if _, err := c.EachStrandedCandidate(ctx, q, func(s prefect.StrandedCandidate) bool { got = append(got, s.ID); return len(got) < 2 }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want[1:3]) {
		t.Fatalf("the next pass, stopped after two: %v, want %v", got, want[1:3])
	}
	run, ok, err := c.ReadStrandedRun(ctx, want[0], clock.Now())
	if err != nil || !ok || run.Id != want[0] || len(run.JobLines) != 1 {
		t.Fatalf("ReadStrandedRun: %+v %v %v, want the run with its one Job line", run, ok, err)
	}
	if _, ok, err := c.ReadStrandedRun(ctx, newID(), clock.Now()); ok || err != nil {
		t.Fatalf("ReadStrandedRun of an unknown run: %v %v, want not found", ok, err)
	}
}
