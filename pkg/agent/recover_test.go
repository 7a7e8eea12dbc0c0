package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// quickGrace is quickRecovery's RecoverGrace: marks younger are not looked at.
const quickGrace = 500 * time.Millisecond

func quickRecovery(c *Config) {
	c.RecoverInterval, c.RecoverGrace = 200*time.Millisecond, quickGrace
}

// waitRecoveryPasses waits until a mark made at marked is older than
// quickGrace, then for three more recovery passes (every 0.2 s), each of
// which would have handed the run to a worker had it been a candidate.
func (e *env) waitRecoveryPasses(marked time.Time) {
	e.t.Helper()
	time.Sleep(time.Until(marked.Add(quickGrace))) // the recovery grace
	e.waitRequests("StrandedFlowRunCandidates", 3, nil)
}

func TestRecoveryCreatesTheJobOfARunStrandedInSubmitted(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	ra := e.start("", quickRecovery)
	eventually(t, "the agent to register", func() bool { return len(e.em.Agents()) == 1 })
	// Another process of this agent marked the run Submitted and died before
	// creating the Job.
	run := e.schedule(emulator.FlowRunSpec{State: "Paused"}) // not in the queue's metadata query
	dead := newClient(e.api, "")
	dead.SetAgentID(e.em.Agents()[0].ID)
	v := run.Version
	if err := dead.SetFlowRunState(context.Background(), run.ID, &v, prefect.SubmittedState("Submitted for execution", run.SerializedState,
		prefect.Submission{AgentID: e.em.Agents()[0].ID, Agent: "test-agent", Namespace: e.ns, Token: "from-the-dead-process"})); err != nil {
		t.Fatal(err)
	}
	got := e.waitSubmitted(run.ID)
	jobs := e.jobsFor(run.ID)
	want, _, _ := manifest.JobName("", run.ID, run.Version, "")
	if len(jobs) != 1 || jobs[0].Name != want {
		t.Fatalf("Jobs %v, want one named %s (the name the lost attempt would have used)", jobs, want)
	}
	if lines := logsAt(got, "INFO"); len(lines) != 1 || !strings.HasPrefix(lines[0], "Recovered after the agent stopped between marking the run Submitted and creating its Job.") {
		t.Fatalf("run log %q", lines)
	}
	if !strings.Contains(ra.logs.String(), "Recovering flow run") {
		t.Fatalf("agent log lacks the recovery")
	}
}

// TestRecoveryLooksAtARunMarkedAgainAfterAnOldJob: a run whose Job line is
// older than the recovery window (an earlier submission, before Lazarus
// rescheduled it) and whose new mark is stranded is still found and gets
// the Job of the new submission.
func TestRecoveryLooksAtARunMarkedAgainAfterAnOldJob(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.start("", quickRecovery)
	eventually(t, "the agent to register", func() bool { return len(e.em.Agents()) == 1 })
	run := e.schedule(emulator.FlowRunSpec{State: "Paused"})
	dead := newClient(e.api, "")
	dead.SetAgentID(e.em.Agents()[0].ID)
	ctx := context.Background()
	if err := dead.WriteRunLogs(ctx, prefect.RunLog{FlowRunID: run.ID, Name: "test-agent", Level: prefect.LevelInfo,
		Message: "Submitted for execution: Job prefect-job-0123456789ab", Time: time.Now().Add(-20 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	v := run.Version
	if err := dead.SetFlowRunState(ctx, run.ID, &v, prefect.SubmittedState("Submitted for execution", run.SerializedState,
		prefect.Submission{AgentID: e.em.Agents()[0].ID, Agent: "test-agent", Namespace: e.ns, Token: "marked-again"})); err != nil {
		t.Fatal(err)
	}
	want, _, _ := manifest.JobName("", run.ID, run.Version, "")
	eventually(t, "the new submission's Job", func() bool {
		jobs := e.jobsFor(run.ID)
		return len(jobs) == 1 && jobs[0].Name == want
	})
}

func TestRecoveryLeavesAFinishedAndDeletedJobAlone(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{})
	e.start("", quickRecovery)
	e.waitSubmitted(run.ID)
	marked := time.Now() // the run's mark is older
	job := e.jobsFor(run.ID)[0]
	// The Job finished without the run reporting, and was deleted.
	background := metav1.DeletePropagationBackground
	if err := cluster.Client.BatchV1().Jobs(e.ns).Delete(context.Background(), job.Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
	e.waitRecoveryPasses(marked)
	if jobs := e.jobsFor(run.ID); len(jobs) != 0 {
		t.Fatalf("the recovery made the Job again: %s", jobs[0].Name)
	}
}

func TestRecoveryLeavesOtherAgentsRunsAlone(t *testing.T) {
	for _, tc := range []struct{ name, agent, namespace string }{
		{"another registration", "other-agent", "flows"},
		// Same name and labels, so the same agent id: another namespace.
		{"the same registration in another namespace", "test-agent", "elsewhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, emulator.Config{})
			run := e.schedule(emulator.FlowRunSpec{State: "Paused"})
			other := newClient(e.api, "")
			id, err := other.RegisterAgent(context.Background(), e.em.DefaultTenant().ID, tc.agent, AgentType, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := run.Version
			by := prefect.Submission{AgentID: id, Agent: tc.agent, Namespace: tc.namespace, Token: "other"}
			if err := other.SetFlowRunState(context.Background(), run.ID, &v, prefect.SubmittedState("Submitted for execution", run.SerializedState, by)); err != nil {
				t.Fatal(err)
			}
			marked := time.Now()
			e.start("", quickRecovery)
			eventually(t, "the agent to register", func() bool { return e.em.Requests()["RegisterAgent"] >= 2 })
			if want := map[string]int{"other-agent": 2, "test-agent": 1}[tc.agent]; len(e.em.Agents()) != want {
				t.Fatalf("%d registrations, want %d", len(e.em.Agents()), want)
			}
			e.waitRecoveryPasses(marked)
			if jobs := e.jobsFor(run.ID); len(jobs) != 0 {
				t.Fatalf("an agent recovered another agent's run: Job %s", jobs[0].Name)
			}
		})
	}
}

func TestDroppedRunsAreNotAskedAboutOnEveryPoll(t *testing.T) {
	// Cloud: each poll is get_runs_in_queue, which lists Queued runs. On
	// Server the agent's own query leaves them out and get_runs_in_queue is
	// called every 30 s, so a run would not be asked about again within
	// this test even if dropped runs were not remembered.
	tenant := emulator.Tenant{ID: "0b7d2c4e-2222-4a2b-9c3d-5e6f7a8b9c0d", Name: "team", Slug: "team"}
	const key = "pcu_DROPPED"
	e := newEnv(t, emulator.Config{Backend: emulator.Cloud, Tenants: []emulator.Tenant{tenant}, APIKeys: map[string]string{key: tenant.ID}})
	// A Queued run is in the queue but not in the metadata query's answer.
	e.schedule(emulator.FlowRunSpec{TenantID: tenant.ID, State: "Queued"})
	e.start(key, func(c *Config) { c.Backend, c.Job.Backend, c.Intervals = "cloud", "cloud", DefaultIntervals })
	// Idle polls at 0, 1, 3 and 7 s: once the fourth is sent, the second and
	// third would each have asked about the run again (the dropped run is
	// due to be asked about again 10 s on).
	e.waitRequests("GetRunsInQueue", 4, nil)
	req := e.em.Requests()
	if req["FlowRunsToSubmit"] != 1 {
		t.Fatalf("%d polls, %d metadata queries: a dropped run should be asked about once per long interval", req["GetRunsInQueue"], req["FlowRunsToSubmit"])
	}
}

func TestAgentWaitsForAnUnreachableAPIAtStart(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{})
	e.em.RefuseConnections(3 * time.Second)
	ra := e.start("", nil)
	e.waitSubmitted(run.ID)
	ra.alive(t)
	if !strings.Contains(ra.logs.String(), "Cannot reach the Prefect API yet; trying again") {
		t.Fatalf("the agent did not meet the refusal at start")
	}
}
