package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// The issue-16 fault tests: the agent against the emulator as Prefect Server
// really behaves (a 30 s Submitted lock per GraphQL replica and nothing
// else, Lazarus), where only the agent's own protocol keeps a run from being
// executed twice, a cancelled run from being executed, or a run from being
// lost. Skipped under -short; each is bounded and ends on an outcome it
// waited for.

// serverBurst is how many runs the burst scenarios submit.
const serverBurst = 500

// cancelRun cancels a run through the emulator's control API, as a user does
// in the UI (Server's cancel_flow_run).
func (e *env) cancelRun(id string) {
	e.t.Helper()
	resp, err := http.Post(e.api+"/emulator/flow-runs/"+id+"/cancel", "application/json", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("cancelling %s: %s", id, resp.Status)
	}
}

// liveJobCounts counts the Jobs not being deleted, per flow run, over namespaces.
func liveJobCounts(namespaces ...string) (map[string]int, error) {
	out := map[string]int{}
	for _, ns := range namespaces {
		list, err := cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing Jobs in %s: %w", ns, err)
		}
		for _, j := range list.Items {
			if j.DeletionTimestamp == nil {
				out[j.Labels[manifest.LabelFlowRunID]]++
			}
		}
	}
	return out, nil
}

// liveJobs is liveJobCounts for a test that stops on an error.
func liveJobs(t *testing.T, namespaces ...string) map[string]int {
	t.Helper()
	out, err := liveJobCounts(namespaces...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitCancelledWithoutJobs waits until every run is Cancelled with no live
// Job in the namespaces: none was executed, none brought back.
func (e *env) waitCancelledWithoutJobs(ids []string, within time.Duration, namespaces ...string) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		jobs := liveJobs(e.t, namespaces...)
		var bad []string
		for _, id := range ids {
			r, _ := e.em.FlowRun(id)
			if r.State != "Cancelled" || jobs[id] != 0 {
				bad = append(bad, fmt.Sprintf("%s: %s with %d Jobs", id, r.State, jobs[id]))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d of %d cancelled runs are not Cancelled without a Job after %s: %s", len(bad), len(ids), within, strings.Join(bad, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// submitterNamespace is the namespace the run's current Submitted state
// names, "" when it names none.
func submitterNamespace(r emulator.FlowRun) string {
	by, _ := prefect.SubmittedBy(r.SerializedState)
	return by.Namespace
}

// winnerNamespace is the namespace of the first Submitted mark after the
// run's last Scheduled state: the submission that wins by the history, ""
// when there is none.
func winnerNamespace(r emulator.FlowRun) string {
	last := -1
	for i, s := range r.States {
		if s.Type == "Scheduled" {
			last = i
		}
	}
	for _, s := range r.States[last+1:] {
		if s.Type == "Submitted" {
			by, _ := prefect.SubmittedBy(s.State)
			return by.Namespace
		}
	}
	return ""
}

// waitJobsOfWinners waits until every run is Submitted and its one Job is in
// the namespace of the mark that wins by the state history: whatever marks
// landed late or on another replica, the Job is the winner's.
func (e *env) waitJobsOfWinners(ids []string, within time.Duration, namespaces ...string) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		perNS := map[string]map[string]int{}
		for _, ns := range namespaces {
			perNS[ns] = liveJobs(e.t, ns)
		}
		var bad []string
		for _, id := range ids {
			r, _ := e.em.FlowRun(id)
			winner := winnerNamespace(r)
			if r.State != "Submitted" || perNS[winner][id] != 1 {
				bad = append(bad, fmt.Sprintf("%s: %s, won by %q", id, r.State, winner))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			first, _ := e.em.FlowRun(strings.SplitN(bad[0], ":", 2)[0])
			e.t.Fatalf("%d runs are not Submitted with their Job in the winner's namespace after %s: %s\nthe first one's history: %s",
				len(bad), within, strings.Join(bad, "; "), history(first))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitLong is eventually with a deadline of its own, for outcomes that
// take longer than eventually's 30 s.
func waitLong(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// history describes a run's states for a failure message.
func history(r emulator.FlowRun) string {
	var out []string
	for _, s := range r.States {
		line := fmt.Sprintf("v%d %s %s %q", s.Version, s.Timestamp.Format("15:04:05.000"), s.Type, s.Message)
		if by, ok := prefect.SubmittedBy(s.State); ok {
			line += fmt.Sprintf(" by %s/%s", by.Namespace, by.Token)
		}
		out = append(out, line)
	}
	return strings.Join(out, " | ")
}

// waitAgents waits until n agents are registered and returns them by name.
func (e *env) waitAgents(n int) map[string]emulator.Agent {
	e.t.Helper()
	out := map[string]emulator.Agent{}
	eventually(e.t, fmt.Sprintf("%d agents to register", n), func() bool {
		for _, a := range e.em.Agents() {
			out[a.Name] = a
		}
		return len(out) >= n
	})
	return out
}

func TestServerRunsCancelledWhileTheAgentWaitsForTheirStartTime(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{})
	start := time.Now().Add(6 * time.Second)
	spec := func() emulator.FlowRunSpec {
		s := suspendedRun(t)
		s.ScheduledStartTime = start
		return s
	}
	cancelled := e.scheduleMany(20, spec)
	witnesses := e.scheduleMany(5, spec)
	ra := e.start("", faultAgent)
	eventually(t, "the agent to wait for the start time of every run", func() bool {
		for _, id := range append(append([]string{}, cancelled...), witnesses...) {
			if _, ok := ra.agent.waiting.Load(id); !ok {
				return false
			}
		}
		return true
	})
	for _, id := range cancelled {
		e.cancelRun(id)
	}
	// The witnesses, due at the same time, are submitted: the agent went
	// past the start time with the cancelled runs in hand.
	got := e.waitExactlyOnce(witnesses, time.Minute, e.ns)
	e.waitCancelledWithoutJobs(cancelled, 30*time.Second, e.ns)
	marks := 0
	for _, id := range cancelled {
		r, _ := e.em.FlowRun(id)
		for _, s := range r.States {
			if s.Type == "Submitted" {
				marks++
			}
		}
	}
	t.Logf("20 runs cancelled while the agent waited for their start time: all Cancelled, no Job; Submitted marks sent anyway: %d; witnesses: %s", marks, got)
}

func TestServerRunsCancelledDuringABurst(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{})
	ids := e.scheduleMany(serverBurst, func() emulator.FlowRunSpec { return suspendedRun(t) })
	began := time.Now()
	e.start("", faultAgent)
	e.waitSubmittedCount(ids, 50)
	// Cancel 150 runs still Scheduled now: most are in the agent's hands
	// (polled, waiting for a slot), some get marked while we cancel.
	var cancelled, rest []string
	for _, id := range ids {
		if r, _ := e.em.FlowRun(id); r.State == "Scheduled" && len(cancelled) < 150 {
			cancelled = append(cancelled, id)
			e.cancelRun(id)
			continue
		}
		rest = append(rest, id)
	}
	if len(cancelled) < 100 {
		t.Fatalf("only %d runs were still Scheduled to cancel", len(cancelled))
	}
	got := e.waitExactlyOnce(rest, 4*time.Minute, e.ns)
	e.waitCancelledWithoutJobs(cancelled, time.Minute, e.ns)
	t.Logf("%d runs, %d cancelled mid-burst: all Cancelled without a Job; the others %s; in %s",
		serverBurst, len(cancelled), got, time.Since(began).Round(time.Second))
}

func TestServerTwoAgentsTwoNamespacesTwoReplicas(t *testing.T) {
	// Two GraphQL replicas: a second mark of a run on the other replica is
	// accepted, whatever the state. Only the claim rule decides.
	e := newFaultEnv(t, emulator.Config{Replicas: 2})
	other := cluster.Namespace(t)
	ids := e.scheduleMany(serverBurst, func() emulator.FlowRunSpec { return suspendedRun(t) })
	began := time.Now()
	a := e.start("", func(c *Config) { faultAgent(c); c.Name = "agent-a" })
	b := e.start("", func(c *Config) { faultAgent(c); c.Name = "agent-b"; c.Job.Namespace = other })
	got := e.waitExactlyOnce(ids, 4*time.Minute, e.ns, other)
	e.waitJobsOfWinners(ids, time.Minute, e.ns, other)
	a.alive(t)
	b.alive(t)
	both := 0
	for _, id := range ids {
		r, _ := e.em.FlowRun(id)
		namespaces := map[string]bool{}
		for _, s := range r.States {
			if s.Type == "Submitted" {
				by, _ := prefect.SubmittedBy(s.State)
				namespaces[by.Namespace] = true
			}
		}
		if len(namespaces) > 1 {
			both++
		}
	}
	t.Logf("two agents, two namespaces, two replicas: %s in %s; runs both agents marked: %d (one Job each all the same)",
		got, time.Since(began).Round(time.Second), both)
}

func TestServerMarksHeldFortySecondsWhileAnotherAgentTakesTheRuns(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{})
	other := cluster.Namespace(t)
	e.start("", func(c *Config) { faultAgent(c); c.Name = "agent-a" })
	e.start("", func(c *Config) { faultAgent(c); c.Name = "agent-b"; c.Job.Namespace = other })
	slow := e.waitAgents(2)["agent-a"]
	// agent-a's Submitted marks are held 40 s by the API (a stuck proxy),
	// then applied: past the 30 s lock, over agent-b's.
	e.em.SetFaults(emulator.Faults{Holds: []emulator.Hold{{Field: "set_flow_run_states", StateType: "Submitted", AgentID: slow.ID, For: 40 * time.Second}}})
	ids := e.scheduleMany(50, func() emulator.FlowRunSpec { return suspendedRun(t) })
	e.waitExactlyOnce(ids, 2*time.Minute, e.ns, other)
	waitLong(t, 2*time.Minute, "every held mark to be applied", func() bool {
		f := e.em.InjectedFaults()
		return f["held"] > 0 && f["held-applied"] == f["held"]
	})
	landed := time.Now()
	// The late marks carry agent-a's id and token and make its runs look
	// stranded to it: wait until both agents' recovery passes (every 1 s,
	// for marks 2 s old) have seen them, then each Job must still be the
	// winning mark's, and no second one made.
	time.Sleep(2 * time.Second) // the recovery grace: marks younger are not looked at
	passes := e.em.Requests()["StrandedFlowRunCandidates"]
	waitLong(t, time.Minute, "four more recovery passes", func() bool { return e.em.Requests()["StrandedFlowRunCandidates"] >= passes+4 })
	e.waitJobsOfWinners(ids, time.Minute, e.ns, other)
	got := e.waitExactlyOnce(ids, time.Minute, e.ns, other)
	f := e.em.InjectedFaults()
	t.Logf("agent-a's marks held 40 s: %d held and applied; %s; the Jobs were the winners' %s after the last late mark",
		f["held-applied"], got, time.Since(landed).Round(time.Second))
}

func TestServerQuotaHeldRunsOutliveLazarus(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{Lazarus: emulator.Lazarus{Period: 5 * time.Second, Cutoff: time.Minute}})
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-pods"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}}
	if _, err := cluster.Client.CoreV1().ResourceQuotas(e.ns).Create(context.Background(), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the quota to be counted", func() bool {
		q, err := cluster.Client.CoreV1().ResourceQuotas(e.ns).Get(context.Background(), "no-pods", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil
	})
	var held []string
	for range 5 {
		held = append(held, e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", nil)).ID)
	}
	// A run submitted by an agent that went away: Lazarus must take it,
	// which shows it runs at this cutoff.
	orphan := e.schedule(emulator.FlowRunSpec{Labels: []string{"elsewhere"}})
	if _, err := e.em.SetFlowRunState(orphan.ID, "Submitted", "Submitted by an agent that went away"); err != nil {
		t.Fatal(err)
	}
	e.start("", func(c *Config) {
		managed(false)(c)
		c.Manage.Pending.QuotaTimeout = 10 * time.Minute
		c.HeartbeatInterval = 15 * time.Second
	})
	for _, id := range held {
		e.warned(id, "exceeded quota")
	}
	began := time.Now()
	waitLong(t, 2*time.Minute, "Lazarus to reschedule the orphan", func() bool {
		r, _ := e.em.FlowRun(orphan.ID)
		return r.TimesResurrected == 1
	})
	// Three minutes held back under the policy, Lazarus passing every 5 s;
	// the orphan, submitted again each time, shows Lazarus at work.
	for time.Since(began) < 3*time.Minute {
		for _, id := range held {
			r, _ := e.em.FlowRun(id)
			if r.State != "Submitted" || r.TimesResurrected != 0 {
				t.Fatalf("after %s a quota-held run is %s, rescheduled %d times", time.Since(began).Round(time.Second), r.State, r.TimesResurrected)
			}
		}
		if r, _ := e.em.FlowRun(orphan.ID); r.State == "Scheduled" {
			if _, err := e.em.SetFlowRunState(orphan.ID, "Submitted", "Submitted again by an agent that went away"); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Second)
	}
	o, _ := e.em.FlowRun(orphan.ID)
	if o.TimesResurrected < 2 {
		t.Fatalf("Lazarus rescheduled the orphan %d times in 3 minutes at a 60 s cutoff, want at least 2: it did not run", o.TimesResurrected)
	}
	for _, id := range held {
		r, _ := e.em.FlowRun(id)
		if everFailed(r) || len(logsAt(r, "ERROR")) != 0 || len(e.jobsFor(id)) != 1 {
			t.Fatalf("a held run is %s with ERROR lines %q and %d Jobs", r.State, logsAt(r, "ERROR"), len(e.jobsFor(id)))
		}
	}
	t.Logf("%d quota-held runs waited 3 minutes under Lazarus at a 60 s cutoff: none rescheduled; the orphan beside them was rescheduled %d times", len(held), o.TimesResurrected)
}

func TestServerRescheduledRunIsNotTouchedWhenItsFirstJobGivesUp(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	other := cluster.Namespace(t)
	run := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": testbed.UnschedulableCPU}))
	if _, err := e.em.SetFlowRunLabels(run.ID, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	e.start("", func(c *Config) {
		managed(false)(c)
		c.Name, c.Labels = "agent-a", []string{"a"}
		// Past Server's 30 s lock, which keeps agent-b's mark out until then.
		c.Manage.Pending.UnschedulableTimeout = 45 * time.Second
	})
	e.waitSubmitted(run.ID)
	e.warned(run.ID, "Insufficient cpu")
	first := e.jobsFor(run.ID)
	// While its Job waits for capacity, a user moves the run to agent-b's
	// label and restarts it; agent-b submits it in its namespace.
	if _, err := e.em.SetFlowRunLabels(run.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.em.SetFlowRunState(run.ID, "Scheduled", "Restarted by a user"); err != nil {
		t.Fatal(err)
	}
	b := e.start("", func(c *Config) {
		managed(false)(c)
		c.Name, c.Labels, c.Job.Namespace = "agent-b", []string{"b"}, other
		c.Manage.Pending.UnschedulableTimeout = time.Hour // its own Job waits
	})
	t.Cleanup(func() {
		if t.Failed() {
			r, _ := e.em.FlowRun(run.ID)
			t.Logf("run %s labels %v: %s\nlogs %+v\nagent-b:\n%s", r.State, r.Labels, history(r), r.Logs, b.logs.String())
		}
	})
	waitLong(t, time.Minute, "agent-b's submission", func() bool {
		r, _ := e.em.FlowRun(run.ID)
		return r.State == "Submitted" && submitterNamespace(r) == other && liveJobs(t, other)[run.ID] == 1
	})
	// agent-a's Job gives up after its 45 s.
	waitLong(t, time.Minute, "agent-a's Job to give up", func() bool { return len(e.jobsFor(run.ID)) == 0 })
	got, _ := e.em.FlowRun(run.ID)
	if got.State != "Submitted" || submitterNamespace(got) != other || everFailed(got) || len(logsAt(got, "ERROR")) != 0 {
		t.Fatalf("the new submission was touched: %s by %q, ERROR lines %q", got.State, submitterNamespace(got), logsAt(got, "ERROR"))
	}
	if len(first) != 1 || liveJobs(t, other)[run.ID] != 1 {
		t.Fatalf("Jobs: %d first, %d of the new submission", len(first), liveJobs(t, other)[run.ID])
	}
}

// TestServerRestartedRunIsNotFailedWhenItsOldJobGivesUp: a user restarts a
// run (Scheduled again) while its Job waits for capacity; when that Job gives
// up, the run is no longer its submission's, and stays Scheduled untouched.
func TestServerRestartedRunIsNotFailedWhenItsOldJobGivesUp(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": testbed.UnschedulableCPU}))
	if _, err := e.em.SetFlowRunLabels(run.ID, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	e.start("", func(c *Config) {
		managed(false)(c)
		c.Name, c.Labels = "agent-a", []string{"a"}
		c.Manage.Pending.UnschedulableTimeout = 10 * time.Second
	})
	e.waitSubmitted(run.ID)
	e.warned(run.ID, "Insufficient cpu")
	// A user moves the run to a label no agent serves yet and restarts it:
	// the run waits in the queue, Scheduled, for an agent that is coming.
	if _, err := e.em.SetFlowRunLabels(run.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.em.SetFlowRunState(run.ID, "Scheduled", "Restarted by a user"); err != nil {
		t.Fatal(err)
	}
	// agent-a's Job gives up: the run it was made for is not the run's
	// current state any more, so it must not fail it.
	waitLong(t, time.Minute, "agent-a's Job to give up", func() bool { return len(e.jobsFor(run.ID)) == 0 })
	got, _ := e.em.FlowRun(run.ID)
	if got.State != "Scheduled" || everFailed(got) || len(logsAt(got, "ERROR")) != 0 {
		t.Fatalf("the restarted run was touched by its old Job's give-up: %s, ERROR lines %q; history %s", got.State, logsAt(got, "ERROR"), history(got))
	}
}
