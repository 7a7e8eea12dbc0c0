package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// The fault tests: hundreds of runs against the real control plane while
// faults are injected, each ending with every run exactly once: one Job and
// Submitted, or Failed with a reason in its log. Skipped under -short.

// faultRuns is how many runs each fault test submits.
const faultRuns = 250

// newFaultEnv is newEnv with the emulator served behind its refusing listener.
func newFaultEnv(t *testing.T, cfg emulator.Config) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	em, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(em.Close)
	srv := httptest.NewUnstartedServer(em.Handler())
	srv.Listener = em.Listener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	return &env{t: t, em: em, ns: cluster.Namespace(t), api: srv.URL}
}

// suspendedRun is a run whose Job is created suspended: it makes no pods, so
// hundreds of them cost the control plane little.
func suspendedRun(t *testing.T) emulator.FlowRunSpec {
	return emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{
		"type": "KubernetesRun",
		"job_template": map[string]any{"apiVersion": "batch/v1", "kind": "Job", "spec": map[string]any{
			"suspend":  true,
			"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "flow"}}}},
		}},
	})}
}

func (e *env) scheduleMany(n int, spec func() emulator.FlowRunSpec) []string {
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, e.schedule(spec()).ID)
	}
	return ids
}

// faultAgent is the agent configuration of the fault tests: quick recovery.
func faultAgent(c *Config) {
	c.RecoverInterval, c.RecoverGrace = time.Second, 2*time.Second
}

// tally is the exactly-once check over a set of runs.
type tally struct {
	runs, submitted, failed, stranded, duplicates, pending int
	bad                                                    []string
}

func (t tally) String() string {
	return fmt.Sprintf("runs %d: one Job and Submitted %d, Failed with a reason %d, stranded %d, duplicates %d, not yet submitted %d",
		t.runs, t.submitted, t.failed, t.stranded, t.duplicates, t.pending)
}

func (t tally) done() bool {
	return t.submitted+t.failed == t.runs && t.stranded == 0 && t.duplicates == 0 && len(t.bad) == 0
}

// count tallies the runs against the Jobs in the namespaces.
func (e *env) count(ids []string, namespaces ...string) tally {
	e.t.Helper()
	live, err := liveJobCounts(namespaces...)
	if err != nil {
		e.t.Logf("listing Jobs: %v", err)
		return tally{runs: len(ids), pending: len(ids)}
	}
	out := tally{runs: len(ids)}
	for _, id := range ids {
		run, _ := e.em.FlowRun(id)
		n := live[id]
		switch {
		case n > 1:
			out.duplicates++
			out.bad = append(out.bad, fmt.Sprintf("%s: %d Jobs", id, n))
		case run.State == "Submitted" && n == 1:
			out.submitted++
		case run.State == "Submitted":
			out.stranded++
		case run.State == "Failed" && len(logsAt(run, "ERROR")) > 0:
			out.failed++
		case run.State == "Failed":
			out.bad = append(out.bad, id+": Failed without a reason in its log")
		default:
			out.pending++
		}
	}
	return out
}

// waitExactlyOnce waits until every run is exactly once and returns the tally.
func (e *env) waitExactlyOnce(ids []string, within time.Duration, namespaces ...string) tally {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := e.count(ids, namespaces...)
		if got.done() {
			return got
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not exactly once after %s: %s; %s", within, got, strings.Join(got.bad, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitSubmittedCount waits until at least n of the runs are Submitted.
func (e *env) waitSubmittedCount(ids []string, n int) {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("%d runs to be Submitted", n), func() bool {
		c := 0
		for _, id := range ids {
			if r, _ := e.em.FlowRun(id); r.State == "Submitted" {
				c++
			}
		}
		return c >= n
	})
}

// alive checks the agent has not returned.
func (ra *runningAgent) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-ra.done:
		ra.done <- err
		t.Fatalf("the agent stopped: %v", err)
	default:
	}
}

func TestExactlyOnceWithFlakyPrefect(t *testing.T) {
	// 30% of requests fail: 20% before anything happens, 10% after the
	// change was applied (answered 503/504, or the connection dropped); 3%
	// more are held past the client's timeout, half of them applied.
	e := newFaultEnv(t, emulator.Config{Faults: &emulator.Faults{
		ServerErrorRate: 0.2, ApplyThenFailRate: 0.05, ApplyThenDropRate: 0.05,
		HoldRate: 0.03, HoldApplyShare: 0.5, Hold: 1500 * time.Millisecond, Seed: 11,
	}})
	ids := e.scheduleMany(faultRuns, func() emulator.FlowRunSpec { return suspendedRun(t) })
	began := time.Now()
	ra := e.start("", func(c *Config) {
		faultAgent(c)
		c.Prefect = prefect.NewClient(prefect.Config{API: e.api, HTTPClient: &http.Client{Timeout: time.Second},
			Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	})
	got := e.waitExactlyOnce(ids, 3*time.Minute, e.ns)
	ra.alive(t)
	faults := e.em.InjectedFaults()
	t.Logf("flaky Prefect: %s in %s; faults injected %v; Submitted marks whose answer was lost and that the read back found applied: %d",
		got, time.Since(began).Round(time.Second), faults, strings.Count(ra.logs.String(), "The Submitted mark was applied although its answer was lost"))
	if faults["apply-then-5xx"] == 0 || faults["apply-then-drop"] == 0 || faults["apply-then-hold"] == 0 {
		t.Fatalf("the faults after apply were not all injected: %v", faults)
	}
}

func TestExactlyOnceWhilePrefectRefusesConnections(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{})
	ids := e.scheduleMany(faultRuns, func() emulator.FlowRunSpec { return suspendedRun(t) })
	ra := e.start("", faultAgent)
	e.waitSubmittedCount(ids, 30)
	e.em.RefuseConnections(20 * time.Second)
	refusedAt := time.Now()
	got := e.waitExactlyOnce(ids, 3*time.Minute, e.ns)
	ra.alive(t)
	if time.Since(refusedAt) < 20*time.Second {
		t.Fatalf("all runs done %s after the refusal began: the refusal did not hold", time.Since(refusedAt))
	}
	t.Logf("Prefect refusing connections for 20 s: %s, done %s after the refusal began; refused connections %d",
		got, time.Since(refusedAt).Round(time.Second), e.em.InjectedFaults()["refused"])
}

func TestExactlyOnceWithTwoAgents(t *testing.T) {
	t.Run("one namespace, one registration", func(t *testing.T) {
		// Two replicas under one name share one agent id: only the token in
		// the Submitted state tells their marks apart.
		e := newFaultEnv(t, emulator.Config{Faults: &emulator.Faults{ApplyThenFailRate: 0.1, Seed: 5}})
		ids := e.scheduleMany(faultRuns, func() emulator.FlowRunSpec { return suspendedRun(t) })
		a, b := e.start("", faultAgent), e.start("", faultAgent)
		got := e.waitExactlyOnce(ids, 2*time.Minute, e.ns)
		a.alive(t)
		b.alive(t)
		if agents := e.em.Agents(); len(agents) != 1 {
			t.Fatalf("%d registrations, want one shared", len(agents))
		}
		t.Logf("two agents, one namespace: %s; faults %v; marks found applied by the read back: %d by the replica that sent them",
			got, e.em.InjectedFaults(), strings.Count(a.logs.String()+b.logs.String(), "The Submitted mark was applied although its answer was lost"))
	})
	t.Run("two namespaces, one registration", func(t *testing.T) {
		// The same name and labels in two namespaces (two installs left at
		// the default name) share one agent id too: the namespace in the
		// Submitted state keeps each agent's recovery to its own marks.
		e := newFaultEnv(t, emulator.Config{Faults: &emulator.Faults{ApplyThenFailRate: 0.1, Seed: 6}})
		other := cluster.Namespace(t)
		ids := e.scheduleMany(faultRuns, func() emulator.FlowRunSpec { return suspendedRun(t) })
		a := e.start("", faultAgent)
		b := e.start("", func(c *Config) { faultAgent(c); c.Job.Namespace = other })
		got := e.waitExactlyOnce(ids, 2*time.Minute, e.ns, other)
		a.alive(t)
		b.alive(t)
		if agents := e.em.Agents(); len(agents) != 1 {
			t.Fatalf("%d registrations, want one shared", len(agents))
		}
		t.Logf("two agents, two namespaces: %s; faults %v", got, e.em.InjectedFaults())
	})
}

func TestExactlyOnceAcrossKubeAPIServerRestart(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{})
	ids := e.scheduleMany(faultRuns, func() emulator.FlowRunSpec { return suspendedRun(t) })
	ra := e.start("", func(c *Config) {
		faultAgent(c)
		pending := jobs.DefaultPendingPolicy()
		pending.ImagePullGrace = 0 // report the pull failure at once, as 1.4.1 did
		c.Manage = jobs.Config{Pending: &pending, EndedCheckInterval: time.Second}
	})
	e.waitSubmittedCount(ids, 40)
	began := time.Now()
	if err := cluster.RestartAPIServer(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver down and back in %s", time.Since(began).Round(100*time.Millisecond))
	// Job management still works after the restart: a pull failure of a Job
	// created now is reported.
	pull := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "KubernetesRun", "image": testbed.ImageImagePull})})
	got := e.waitExactlyOnce(ids, 3*time.Minute, e.ns)
	if got.failed != 0 {
		t.Fatalf("%d healthy runs Failed across the restart", got.failed)
	}
	deadline := time.Now().Add(time.Minute)
	for r, _ := e.em.FlowRun(pull.ID); r.State != "Failed"; r, _ = e.em.FlowRun(pull.ID) {
		if time.Now().After(deadline) {
			pods, _ := cluster.Client.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + pull.ID})
			t.Fatalf("the pull failure was not reported: run %s, logs %+v, Jobs %d, pods %+v", r.State, r.Logs, len(e.jobsFor(pull.ID)), pods.Items)
		}
		time.Sleep(100 * time.Millisecond)
	}
	failed, _ := e.em.FlowRun(pull.ID)
	if errs := logsAt(failed, "ERROR"); len(errs) != 1 || !strings.Contains(errs[0], "cannot pull image") {
		t.Fatalf("the pull failure's ERROR lines: %q", errs)
	}
	ra.alive(t)
	t.Logf("kube-apiserver killed mid-burst for 5 s: %s; pull failure after the restart reported", got)
}

func TestTaskRunRetryRelaunchesTheRunningRun(t *testing.T) {
	for _, keep := range []bool{true, false} {
		name := "old Job deleted"
		if keep {
			name = "old Job kept"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, emulator.Config{})
			spec := suspendedRun(t)
			spec.TaskRuns = []emulator.TaskRunSpec{{}}
			spec.ScheduledStartTime = time.Now().Add(-time.Minute)
			run := e.schedule(spec)
			e.start("", nil)
			e.waitSubmitted(run.ID)
			first := e.jobsFor(run.ID)
			if len(first) != 1 {
				t.Fatalf("%d Jobs after the first submission", len(first))
			}
			// The flow runs; its task fails and is due for a retry, and the
			// flow's process exits (its Job finished or gone).
			if _, err := e.em.SetFlowRunState(run.ID, "Running", "Running flow."); err != nil {
				t.Fatal(err)
			}
			if !keep {
				background := metav1.DeletePropagationBackground
				if err := cluster.Client.BatchV1().Jobs(e.ns).Delete(context.Background(), first[0].Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
					t.Fatal(err)
				}
			}
			tr := run.TaskRuns[0]
			if _, err := e.em.SetTaskRunState(tr.ID, "Retrying", "Retrying task.", time.Now().Add(-5*time.Second)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the task run to be Submitted again", func() bool {
				r, _ := e.em.FlowRun(run.ID)
				return r.TaskRuns[0].State == "Submitted" && len(r.TaskRuns[0].States) >= 3
			})
			var relaunch string
			eventually(t, "the relaunch Job", func() bool {
				for _, j := range e.jobsFor(run.ID) {
					if j.Name != first[0].Name && j.DeletionTimestamp == nil {
						relaunch = j.Name
					}
				}
				return relaunch != ""
			})
			// The relaunch's line is written after its Job is created.
			want := []string{"Submitted for execution: Job " + first[0].Name, "Submitted for execution: Job " + relaunch}
			eventually(t, "the relaunch's line on the run", func() bool {
				got, _ := e.em.FlowRun(run.ID)
				return contains(logsAt(got, "INFO"), want[1])
			})
			// Three more polls, each of which would relaunch again if the
			// task run's mark were not seen: no more Jobs, no more lines.
			e.waitRequests("DueFlowRuns", 3, func() bool {
				got, _ := e.em.FlowRun(run.ID)
				return len(logsAt(got, "INFO")) > len(want)
			})
			got, _ := e.em.FlowRun(run.ID)
			lines := logsAt(got, "INFO")
			if strings.Join(lines, "\n") != strings.Join(want, "\n") {
				t.Fatalf("run log %q, want %q", lines, want)
			}
			live := 0
			for _, j := range e.jobsFor(run.ID) {
				if j.DeletionTimestamp == nil {
					live++
				}
			}
			if wantJobs := map[bool]int{true: 2, false: 1}[keep]; live != wantJobs {
				t.Fatalf("%d Jobs, want %d", live, wantJobs)
			}
			if got.State != "Running" || got.Version != run.Version+2 {
				t.Fatalf("flow run %s version %d: a relaunch must not touch the flow run's state", got.State, got.Version)
			}
		})
	}
}

func TestRescheduledRunReplacesItsPendingJob(t *testing.T) {
	// Server refuses a second Submitted mark for 30 s: Lazarus comes 10 min
	// after the first, so a short lock keeps this test about the Jobs.
	e := newEnv(t, emulator.Config{SubmittedLock: 2 * time.Second})
	run := e.schedule(suspendedRun(t))
	ra := e.start("", nil)
	e.waitSubmitted(run.ID)
	first := e.jobsFor(run.ID)[0]
	// Lazarus comes minutes later: the agent's Job cache has the first Job by then.
	eventually(t, "the agent's Job index to hold the first Job", func() bool {
		found, synced := ra.agent.jobs.RunJobs(metav1.NamespaceAll, run.ID)
		return synced && len(found) == 1
	})
	// Lazarus finds the run Submitted with no flow process and reschedules it.
	if _, err := e.em.SetFlowRunState(run.ID, "Scheduled", "Rescheduled by a Lazarus process."); err != nil {
		t.Fatal(err)
	}
	var second string
	eventually(t, "the new Job and the old one gone", func() bool {
		second = ""
		for _, j := range e.jobsFor(run.ID) {
			if j.DeletionTimestamp != nil {
				continue
			}
			if j.Name == first.Name {
				return false
			}
			second = j.Name
		}
		return second != ""
	})
	got := e.waitState(run.ID, "Submitted")
	// The line is written once the delete returned, which may be after the
	// Job is seen gone.
	eventually(t, "a run log line about the deleted Job", func() bool {
		got, _ = e.em.FlowRun(run.ID)
		return contains(logsAt(got, "INFO"), "Deleted Job "+first.Name+" of an earlier submission")
	})
	eventually(t, "the run log to name the new Job", func() bool {
		got, _ = e.em.FlowRun(run.ID)
		return contains(logsAt(got, "INFO"), "Submitted for execution: Job "+second)
	})
}

func TestPollsStayFewWhileARunWaitsForItsStartTime(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	began := time.Now()
	run := e.schedule(emulator.FlowRunSpec{ScheduledStartTime: began.Add(9 * time.Second)})
	e.start("", func(c *Config) { c.Intervals = DefaultIntervals })
	// The run is submitted once its start time came, 9 s on: count the
	// polls made while it waited.
	e.waitSubmitted(run.ID)
	polls, waited := e.em.Requests()["DueFlowRuns"], time.Since(began).Round(100*time.Millisecond)
	// The back-off steps 0.5, 1, 2, 4 s, capped at the start time: about ten.
	if polls > 20 {
		t.Fatalf("%d polls in %s while one run waited for its start time", polls, waited)
	}
	t.Logf("%d polls in %s while a run waited for its start time", polls, waited)
}

func TestStopMidBurstLeavesNoRunStranded(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{Faults: &emulator.Faults{DelayRate: 0.2, Delay: 50 * time.Millisecond, Seed: 9}})
	ids := e.scheduleMany(faultRuns, func() emulator.FlowRunSpec { return suspendedRun(t) })
	ra := e.start("", func(c *Config) { c.ShutdownTimeout = 100 * time.Millisecond })
	e.waitSubmittedCount(ids, 40)
	ra.halt(t)
	// Nothing recovers here: the stop itself must leave every run either
	// untouched (Scheduled) or Submitted with its Job.
	got := e.count(ids, e.ns)
	if got.stranded != 0 || got.duplicates != 0 || got.failed != 0 || got.submitted+got.pending != got.runs {
		t.Fatalf("after a stop mid-burst: %s; %s", got, strings.Join(got.bad, "; "))
	}
	t.Logf("stopped mid-burst: %s", got)
}
