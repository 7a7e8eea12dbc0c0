package agent

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

// beforeMark serves the emulator's API and runs hook once, just before the
// first Submitted mark of run reaches the emulator: a write that lands
// between the agent's last read and its mark.
func beforeMark(t *testing.T, em *emulator.Emulator, runID string, hook func()) string {
	t.Helper()
	var once sync.Once
	inner := em.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"SetFlowRunStates"`)) && bytes.Contains(body, []byte(runID)) && bytes.Contains(body, []byte(`"type":"Submitted"`)) {
			once.Do(hook)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// submittedStates counts a run's Submitted states.
func submittedStates(r emulator.FlowRun) int {
	n := 0
	for _, s := range r.States {
		if s.Type == "Submitted" {
			n++
		}
	}
	return n
}

func TestRunCancelledWhileWaitingForItsStartTimeIsNotExecuted(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{ScheduledStartTime: time.Now().Add(3 * time.Second)})
	ra := e.start("", nil)
	eventually(t, "the agent to wait for the run's start time", func() bool {
		_, ok := ra.agent.waiting.Load(run.ID)
		return ok
	})
	if _, err := e.em.SetFlowRunState(run.ID, "Cancelled", "Cancelled by a user"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the agent to leave the run that changed since its poll", func() bool {
		return strings.Contains(ra.logs.String(), "The flow run changed since the poll")
	})
	got, _ := e.em.FlowRun(run.ID)
	if got.State != "Cancelled" || submittedStates(got) != 0 || len(e.jobsFor(run.ID)) != 0 {
		t.Fatalf("the cancelled run is %s with %d Submitted states and %d Jobs, want Cancelled, none and none", got.State, submittedStates(got), len(e.jobsFor(run.ID)))
	}
}

func TestRunCancelledJustBeforeTheMarkGetsNoJob(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{})
	api := beforeMark(t, e.em, run.ID, func() {
		if _, err := e.em.SetFlowRunState(run.ID, "Cancelled", "Cancelled by a user"); err != nil {
			t.Error(err)
		}
	})
	ra := e.start("", func(c *Config) { c.Prefect = newClient(api, "") })
	// On Server the mark is accepted over Cancelled; the claim rule then
	// says the run became Cancelled first, and the agent puts Cancelled back.
	e.showOnFailure(run.ID, ra)
	eventually(t, "the agent to find its mark came after the cancel", func() bool {
		r, _ := e.em.FlowRun(run.ID)
		return r.State == "Cancelled" && (contains(logsAt(r, "WARNING"), "the run became Cancelled before the mark") ||
			strings.Contains(ra.logs.String(), "The Submitted mark was refused"))
	})
	if n := len(e.jobsFor(run.ID)); n != 0 {
		t.Fatalf("%d Jobs for a run cancelled before its mark", n)
	}
}

// showOnFailure logs the run's state and log and the agent's log if the
// test fails.
func (e *env) showOnFailure(runID string, ra *runningAgent) {
	e.t.Cleanup(func() {
		if e.t.Failed() {
			r, _ := e.em.FlowRun(runID)
			e.t.Logf("run %s %+v\nagent:\n%s", r.State, r.Logs, ra.logs.String())
		}
	})
}

func TestLateMarkOfAnotherAgentsRunCreatesNoJobAndPutsTheStateBack(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{})
	// Another agent (one that records no claim, like 1.4.1) submits the run
	// and its flow starts, between this agent's read and its mark: this
	// agent's mark arrives as one held 40 s, or sent to another replica.
	api := beforeMark(t, e.em, run.ID, func() {
		for _, st := range []string{"Submitted", "Running"} {
			if _, err := e.em.SetFlowRunState(run.ID, st, "by the other agent"); err != nil {
				t.Error(err)
			}
		}
	})
	ra := e.start("", func(c *Config) { c.Prefect = newClient(api, "") })
	e.showOnFailure(run.ID, ra)
	eventually(t, "the agent to find another mark won the run", func() bool {
		r, _ := e.em.FlowRun(run.ID)
		return r.State == "Running" && (contains(logsAt(r, "WARNING"), "claimed the same Scheduled state first") ||
			strings.Contains(ra.logs.String(), "The Submitted mark was refused"))
	})
	if n := len(e.jobsFor(run.ID)); n != 0 {
		t.Fatalf("%d Jobs for a run another agent submitted first", n)
	}
}

func TestJobOfAnEarlierSubmissionDoesNotFailTheNewOne(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": testbed.UnschedulableCPU}))
	first := e.start("", managed(false))
	e.waitSubmitted(run.ID)
	old := e.jobsFor(run.ID)
	first.halt(t)
	// A user restarts the run and another agent (elsewhere) submits it.
	for _, st := range []string{"Scheduled", "Submitted"} {
		if _, err := e.em.SetFlowRunState(run.ID, st, "elsewhere"); err != nil {
			t.Fatal(err)
		}
	}
	// The old Job, unschedulable, gives up under the next agent here.
	second := e.start("", func(c *Config) { managed(false)(c); c.Manage.Pending.UnschedulableTimeout = time.Second })
	e.warned(run.ID, "of an earlier submission of this run")
	// The WARNING is the drift /metrics counts by kind (counted once it landed).
	eventually(t, "the report for another submission to be counted as drift", func() bool {
		return driftCount(t, second, jobs.DriftOtherSubmission) == 1
	})
	e.waitJobGone(run.ID)
	got, _ := e.em.FlowRun(run.ID)
	if got.State != "Submitted" || everFailed(got) || len(logsAt(got, "ERROR")) != 0 {
		t.Fatalf("the new submission was touched: %s, ERROR lines %q", got.State, logsAt(got, "ERROR"))
	}
	if len(old) != 1 {
		t.Fatalf("%d Jobs of the first submission, want 1", len(old))
	}
}

func TestQuotaHeldRunKeepsItsHeartbeat(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-pods"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}}
	if _, err := cluster.Client.CoreV1().ResourceQuotas(e.ns).Create(context.Background(), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the quota to be counted", func() bool {
		q, err := cluster.Client.CoreV1().ResourceQuotas(e.ns).Get(context.Background(), "no-pods", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil
	})
	run := e.schedule(emulator.FlowRunSpec{})
	e.start("", func(c *Config) { managed(false)(c); c.HeartbeatInterval = 200 * time.Millisecond })
	e.warned(run.ID, "exceeded quota")
	r, _ := e.em.FlowRun(run.ID)
	marked := r.Heartbeat
	eventually(t, "the held run's heartbeat to move on past its mark", func() bool {
		r, _ = e.em.FlowRun(run.ID)
		return r.Heartbeat.After(marked.Add(time.Second))
	})
	if r.State != "Submitted" || len(logsAt(r, "ERROR")) != 0 {
		t.Fatalf("the held run is %s with ERROR lines %q", r.State, logsAt(r, "ERROR"))
	}
}

// together serves the emulator's API and holds the first mark of
// taskRunID's retry (a Submitted state wrapping Retrying) until a second one
// arrives (or 20 s pass): two agents' relaunch
// marks on Server, where task runs have no lock at all, both land.
func together(t *testing.T, em *emulator.Emulator, taskRunID string) string {
	t.Helper()
	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	inner := em.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"SetTaskRunStates"`)) && bytes.Contains(body, []byte(taskRunID)) && bytes.Contains(body, []byte(`"Retrying"`)) {
			mu.Lock()
			arrived++
			if arrived == 2 {
				close(both)
			}
			first := arrived == 1
			mu.Unlock()
			if first {
				select {
				case <-both:
				case <-time.After(20 * time.Second):
				}
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestTwoAgentsRelaunchingOneRunMakeOneJob(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	other := cluster.Namespace(t)
	spec := suspendedRun(t)
	spec.TaskRuns = []emulator.TaskRunSpec{{}}
	spec.ScheduledStartTime = time.Now().Add(-time.Minute)
	run := e.schedule(spec)
	tr := run.TaskRuns[0]
	api := together(t, e.em, tr.ID)
	a := e.start("", func(c *Config) { c.Prefect = newClient(api, "") })
	b := e.start("", func(c *Config) { c.Prefect = newClient(api, ""); c.Job.Namespace = other })
	jobs := func() []string {
		var names []string
		for _, ns := range []string{e.ns, other} {
			list, err := cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "prefect.io/flow_run_id=" + run.ID})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range list.Items {
				names = append(names, ns+"/"+j.Name)
			}
		}
		return names
	}
	eventually(t, "the first submission's Job", func() bool { return len(jobs()) == 1 })
	// The flow runs, its task fails and is due for a retry; both agents take
	// the run back from the queue and mark the task run at the same moment.
	if _, err := e.em.SetFlowRunState(run.ID, "Running", "Running flow."); err != nil {
		t.Fatal(err)
	}
	if _, err := e.em.SetTaskRunState(tr.ID, "Retrying", "Retrying task.", time.Now().Add(-5*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			r, _ := e.em.FlowRun(run.ID)
			t.Logf("run %s, task run states %+v, Jobs %q\nagent A:\n%s\nagent B:\n%s", r.State, r.TaskRuns[0].States, jobs(), a.logs.String(), b.logs.String())
		}
	})
	eventually(t, "one relaunch to lose the claim and the other to create its Job", func() bool {
		lost := strings.Contains(a.logs.String()+b.logs.String(), "Another agent's relaunch claimed the due task runs first")
		return lost && len(jobs()) >= 2
	})
	if got := jobs(); len(got) != 2 {
		t.Fatalf("Jobs %q: want the first submission's and one relaunch", got)
	}
	r, _ := e.em.FlowRun(run.ID)
	if n := len(r.TaskRuns[0].States); n < 4 {
		t.Fatalf("the task run has %d states: both relaunches should have marked it", n)
	}
}
