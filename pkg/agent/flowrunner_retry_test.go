package agent

import (
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
)

// TestRealRunnerRetryDueLater runs a flow whose task fails and retries after
// 11 minutes. Prefect 1.4.1 waits in-process only for retries due within 10
// minutes (engine/cloud/task_runner.py), so the first pod's runner exits and
// leaves the run Running with the task run Retrying. The test then brings
// the retry forward (the emulator moves the Retrying state's start time: a
// stand-in for waiting) and the agent relaunches the run under a new Job
// name, whose runner finishes it Success; there is never more than one live
// Job of the run.
func TestRealRunnerRetryDueLater(t *testing.T) {
	cluster.RequireFlowRunner(t)
	t.Parallel()
	e := newEnv(t, emulator.Config{})
	run := e.runFlow("testflows.retry_later", nil, "")
	stop := make(chan struct{})
	maxLive := make(chan int, 1)
	go func() {
		most := 0
		for {
			select {
			case <-stop:
				maxLive <- most
				return
			case <-time.After(50 * time.Millisecond):
			}
			live := 0
			for _, j := range e.jobsFor(run.ID) {
				if j.DeletionTimestamp == nil && j.Status.Succeeded == 0 && j.Status.Failed == 0 {
					live++
				}
			}
			most = max(most, live)
		}
	}()
	e.start("", managed(false))

	e.waitTaskRun(run.ID, "flaky-1", "Retrying")
	first := e.jobsFor(run.ID)
	e.warned(run.ID, "completed while the flow run is Running")
	r, _ := e.em.FlowRun(run.ID)
	if r.State != "Running" || len(first) != 1 {
		t.Fatalf("after the first attempt the run is %s with %d Jobs, want Running with one", r.State, len(first))
	}
	var retry emulator.TaskRun
	for _, tr := range r.TaskRuns {
		retry = *tr
	}
	if wait := time.Until(retry.StateStartTime); wait < 10*time.Minute {
		t.Fatalf("the retry is due in %s, want 11 minutes (beyond the runner's in-process wait)", wait)
	}
	if err := e.em.MoveTaskRunStart(retry.ID, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}

	got := e.waitFinal(run.ID, "Success", "Failed")
	close(stop)
	if got.State != "Success" {
		t.Fatalf("the retried run ended %s; log:\n%s", got.State, runLog(got))
	}
	e.waitLog(run.ID, "INFO", "flaky: attempt 2")
	jobs := e.jobsFor(run.ID)
	if len(jobs) != 2 || jobs[0].Name == jobs[1].Name {
		t.Errorf("Jobs %d, want the first and one relaunch under a new name", len(jobs))
	}
	if most := <-maxLive; most != 1 {
		t.Errorf("at most %d live Jobs of the run at once, want 1", most)
	}
}
