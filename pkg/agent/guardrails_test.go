package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

// The guardrails against the real control plane and the emulator: a run a
// concurrency limit holds stays Scheduled with one line and starts, oldest
// first, within seconds of a slot freeing; late runs after an outage are
// skipped with a line each; a Job past its run time limit fails its run.

func guardedRun(t *testing.T, flow, image string, start time.Time) emulator.FlowRunSpec {
	spec := imageRun(t, image, nil)
	spec.Flow = emulator.Flow{Name: flow}
	spec.ScheduledStartTime = start
	return spec
}

// gauge reads one of the agent's metrics by name and limit label.
func gauge(t *testing.T, a *Agent, name, limit string) float64 {
	t.Helper()
	families, err := a.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if limit == "" || (l.GetName() == "limit" && l.GetValue() == limit) {
					return m.GetGauge().GetValue()
				}
			}
			if limit == "" {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{limit=%q}", name, limit)
	return 0
}

func TestConcurrencyLimitHoldsRunsUntilASlotFreesOldestFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	e := newEnv(t, emulator.Config{})
	now := time.Now()
	running := e.schedule(guardedRun(t, "etl-a", testbed.ImageRun, now.Add(-time.Minute)))
	ra := e.start("", func(c *Config) {
		managed(true)(c)
		c.Intervals = DefaultIntervals // idle polls back off to 10 s: a freed slot must wake the loop
		c.RecoverGrace = time.Second
		c.Guardrails.Limits = []Limit{{Kind: LimitFlow, Pattern: "etl-*", Max: 1}}
	})
	e.waitSubmitted(running.ID)
	newer := e.schedule(guardedRun(t, "etl-b", "", now.Add(-10*time.Second)))
	older := e.schedule(guardedRun(t, "etl-c", "", now.Add(-20*time.Second)))
	other := e.schedule(guardedRun(t, "report", "", now))
	ra.agent.Poke()
	e.waitSubmitted(other.ID)
	want := "Waiting for a slot: concurrency limit flow=etl-* allows 1 flow runs at once and 1 hold it; the run stays Scheduled"
	for _, id := range []string{newer.ID, older.ID} {
		eventually(t, "the held run's line", func() bool {
			r, _ := e.em.FlowRun(id)
			return contains(logsAt(r, "INFO"), want)
		})
	}
	// More polls go by: the runs stay Scheduled, with one line each.
	polls := e.em.Requests()["DueFlowRuns"]
	for i := 0; i < 3; i++ {
		ra.agent.Poke()
		eventually(t, "another poll", func() bool { return e.em.Requests()["DueFlowRuns"] > polls })
		polls = e.em.Requests()["DueFlowRuns"]
	}
	for _, id := range []string{newer.ID, older.ID} {
		r, _ := e.em.FlowRun(id)
		n := 0
		for _, l := range logsAt(r, "INFO") {
			if strings.HasPrefix(l, "Waiting for a slot") {
				n++
			}
		}
		if r.State != "Scheduled" || n != 1 || len(e.jobsFor(id)) != 0 {
			t.Fatalf("held run %s: %s with %d lines and %d Jobs, want Scheduled, 1 line, no Job", id, r.State, n, len(e.jobsFor(id)))
		}
	}
	if got := gauge(t, ra.agent, "prefect_agent_concurrency_limit_in_use", "flow=etl-*"); got != 1 {
		t.Fatalf("/metrics in use %v, want 1", got)
	}
	if got := gauge(t, ra.agent, "prefect_agent_flow_runs_held", ""); got != 2 {
		t.Fatalf("/metrics held %v, want 2", got)
	}
	// The running flow's Job goes: the older held run is taken within seconds.
	job := e.jobsFor(running.ID)[0]
	freed := time.Now()
	policy := metav1.DeletePropagationBackground
	if err := cluster.Client.BatchV1().Jobs(e.ns).Delete(context.Background(), job.Name, metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		t.Fatal(err)
	}
	e.waitSubmitted(older.ID)
	took := time.Since(freed)
	if r, _ := e.em.FlowRun(newer.ID); r.State != "Scheduled" && r.StateTimestamp.Before(mustRun(e, older.ID).StateTimestamp) {
		t.Fatalf("the newer run was taken before the older one")
	}
	if took > 5*time.Second {
		t.Fatalf("the held run was taken %s after the slot freed, want within 5 s", took)
	}
	// Its Job completes (and is deleted): then the newer one.
	e.waitSubmitted(newer.ID)
	t.Logf("slot freed -> oldest held run submitted in %s", took.Round(10*time.Millisecond))
}

func mustRun(e *env, id string) emulator.FlowRun {
	r, _ := e.em.FlowRun(id)
	return r
}

func TestLateRunsAfterAnOutageAreSkipped(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	e := newEnv(t, emulator.Config{})
	// 100 runs fell due while no agent ran: 60 between 3 minutes and 70 s
	// ago, 30 in the last 50 s; 10 more are due just after the agent starts.
	now := time.Now()
	var late, onTime []string
	for i := range 100 {
		spec := suspendedRun(t)
		switch {
		case i < 60:
			spec.ScheduledStartTime = now.Add(-3*time.Minute + time.Duration(i)*(110*time.Second)/60)
			late = append(late, e.schedule(spec).ID)
		case i < 90:
			spec.ScheduledStartTime = now.Add(-50*time.Second + time.Duration(i-60)*(45*time.Second)/30)
			onTime = append(onTime, e.schedule(spec).ID)
		default:
			spec.ScheduledStartTime = now.Add(3 * time.Second)
			onTime = append(onTime, e.schedule(spec).ID)
		}
	}
	e.start("", func(c *Config) {
		managed(false)(c)
		c.Guardrails.MaxLateness, c.Guardrails.LateRuns = time.Minute, LateSkip
	})
	e.waitExactlyOnce(onTime, 2*time.Minute, e.ns)
	for _, id := range late {
		r := e.waitState(id, "Skipped")
		warnings := logsAt(r, "WARNING")
		if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "Skipped: the run was ") ||
			!strings.Contains(warnings[0], "late when the agent first saw it, more than --max-lateness 1m0s (--late-runs skip)") {
			t.Fatalf("skipped run %s lines %q, want one saying how late it was", id, warnings)
		}
		if len(e.jobsFor(id)) != 0 {
			t.Fatalf("skipped run %s has a Job", id)
		}
	}
	first, _ := e.em.FlowRun(late[0])
	t.Logf("%d late runs skipped (the latest of them: %q), %d run", len(late), logsAt(first, "WARNING")[0], len(onTime))
}

func TestRunPastItsRunTimeLimitIsFailed(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageRun, nil))
	e.start("", func(c *Config) {
		managed(true)(c)
		c.Job.MaxRunTime = 5 * time.Second
	})
	e.waitSubmitted(run.ID)
	job := e.jobsFor(run.ID)[0]
	if d := job.Spec.ActiveDeadlineSeconds; d == nil || *d != 5 {
		t.Fatalf("the Job's activeDeadlineSeconds is %v, want 5", d)
	}
	failed := e.waitFailed(run.ID, fmt.Sprintf("Job %s ran longer than its run time limit, 5s (--max-run-time): Kubernetes stopped it (DeadlineExceeded)", job.Name))
	if w := logsAt(failed, "WARNING"); len(w) != 0 {
		t.Fatalf("the deadline's pod deletion was reported: %q", w)
	}
	late := failed.StateTimestamp.Sub(job.CreationTimestamp.Time) - 5*time.Second
	if late > 10*time.Second {
		t.Fatalf("the run was failed %s after its limit, want within seconds", late)
	}
	e.waitJobGone(run.ID)
	t.Logf("failed %s after the 5 s limit", late.Round(100*time.Millisecond))
}

func TestLateRunIsFailedUnderTheFailPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	e := newEnv(t, emulator.Config{})
	late := suspendedRun(t)
	late.ScheduledStartTime = time.Now().Add(-2 * time.Hour)
	lateRun := e.schedule(late)
	onTime := e.schedule(suspendedRun(t))
	e.start("", func(c *Config) {
		managed(false)(c)
		c.Guardrails.MaxLateness, c.Guardrails.LateRuns = 30*time.Minute, LateFail
	})
	e.waitFailed(lateRun.ID, "late when the agent first saw it, more than --max-lateness 30m0s (--late-runs fail): it is failed without running")
	e.waitSubmitted(onTime.ID)
	if len(e.jobsFor(lateRun.ID)) != 0 {
		t.Fatal("the failed late run has a Job")
	}
}
