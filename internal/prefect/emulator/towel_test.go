package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func lastLog(r FlowRun) Log {
	if len(r.Logs) == 0 {
		return Log{}
	}
	return r.Logs[len(r.Logs)-1]
}

func TestLazarusReschedulesSilentRunsThenGivesUp(t *testing.T) {
	clock := newTestClock()
	em, srv := start(t, Config{Now: clock.Now})
	spec := func(state string, taskStates ...string) FlowRun {
		var trs []TaskRunSpec
		for _, s := range taskStates {
			trs = append(trs, TaskRunSpec{State: s})
		}
		r, _ := em.AddFlowRun(FlowRunSpec{TaskRuns: trs})
		em.SetFlowRunState(r.ID, state, "")
		return r
	}
	submitted := spec("Submitted")
	busy := spec("Running", "Running")
	idle := spec("Running", "Success", "Failed")
	fresh := spec("Submitted")
	scheduled := spec("Scheduled")
	off, _ := em.AddFlowRun(FlowRunSpec{Flow: Flow{LazarusDisabled: true}})
	em.SetFlowRunState(off.ID, "Submitted", "")

	clock.Add(5 * time.Minute)
	gql(t, srv.URL, `mutation($id: UUID!) { update_flow_run_heartbeat(input: {flow_run_id: $id}) { success } }`, map[string]any{"id": fresh.ID})
	clock.Add(5 * time.Minute)
	if n := em.RunLazarus(); n != 2 {
		t.Fatalf("Lazarus rescheduled %d runs, want 2 (the silent Submitted run and the Running run with no task run in progress)", n)
	}
	for _, id := range []string{submitted.ID, idle.ID} {
		r, _ := em.FlowRun(id)
		if r.State != "Scheduled" || r.StateMessage != "Rescheduled by a Lazarus process." || r.TimesResurrected != 1 || !r.StateStartTime.Equal(clock.Now()) {
			t.Fatalf("rescheduled run: %s %q times_resurrected %d start %s", r.State, r.StateMessage, r.TimesResurrected, r.StateStartTime)
		}
		if l := lastLog(r); l.Message != "Rescheduled by a Lazarus process. This is attempt 1." || l.Level != "INFO" || l.Name != "prefect-server.Lazarus.FlowRun" {
			t.Fatalf("log line %+v", l)
		}
	}
	for id, want := range map[string]string{busy.ID: "Running", fresh.ID: "Submitted", scheduled.ID: "Scheduled", off.ID: "Submitted"} {
		if r, _ := em.FlowRun(id); r.State != want || r.TimesResurrected != 0 {
			t.Fatalf("run left alone is %s (times_resurrected %d), want %s", r.State, r.TimesResurrected, want)
		}
	}
	// Submitted again and silent again, three more times: the fourth pass fails it.
	for attempt := 2; attempt <= 4; attempt++ {
		em.SetFlowRunState(submitted.ID, "Submitted", "")
		clock.Add(10 * time.Minute)
		em.RunLazarus()
		r, _ := em.FlowRun(submitted.ID)
		if attempt <= 3 && (r.State != "Scheduled" || r.TimesResurrected != attempt) {
			t.Fatalf("attempt %d: %s times_resurrected %d", attempt, r.State, r.TimesResurrected)
		}
		if attempt == 4 {
			want := "A Lazarus process attempted to reschedule this run 3 times without success. Marking as failed."
			if r.State != "Failed" || r.StateMessage != want || r.TimesResurrected != 3 || lastLog(r).Message != want || lastLog(r).Level != "ERROR" {
				t.Fatalf("after the attempt limit: %s %q times_resurrected %d log %+v", r.State, r.StateMessage, r.TimesResurrected, lastLog(r))
			}
		}
	}
}

func TestZombieKillerRetriesOrFailsSilentTaskRunsAndCancellingRuns(t *testing.T) {
	clock := newTestClock()
	em, _ := start(t, Config{Now: clock.Now})
	running, _ := em.AddFlowRun(FlowRunSpec{TaskRuns: []TaskRunSpec{
		{Name: "retried", MaxRetries: 2, RetryDelay: time.Minute}, {Name: "no-retries"},
	}})
	em.SetFlowRunState(running.ID, "Running", "")
	for _, tr := range running.TaskRuns {
		em.SetTaskRunState(tr.ID, "Running", "", time.Time{})
	}
	// A run the agent resubmitted while its task run was left Running: the
	// zombie killer fails that task run even though retries remain.
	resubmitted, _ := em.AddFlowRun(FlowRunSpec{TaskRuns: []TaskRunSpec{{Name: "orphan", MaxRetries: 5}}})
	em.SetFlowRunState(resubmitted.ID, "Running", "")
	em.SetTaskRunState(resubmitted.TaskRuns[0].ID, "Running", "", time.Time{})
	em.SetFlowRunState(resubmitted.ID, "Submitted", "")
	cancelling, _ := em.AddFlowRun(FlowRunSpec{})
	em.SetFlowRunState(cancelling.ID, "Running", "")
	em.CancelFlowRun(cancelling.ID, "")
	clock.Add(9 * time.Minute)
	alive, _ := em.AddFlowRun(FlowRunSpec{TaskRuns: []TaskRunSpec{{}}})
	em.SetFlowRunState(alive.ID, "Running", "")
	em.SetTaskRunState(alive.TaskRuns[0].ID, "Running", "", time.Time{})
	clock.Add(time.Minute)

	if n := em.RunZombieKiller(); n != 4 {
		t.Fatalf("the zombie killer handled %d, want 4", n)
	}
	r, _ := em.FlowRun(running.ID)
	retried, failed := r.TaskRuns[0], r.TaskRuns[1]
	if retried.State != "Retrying" || !retried.StateStartTime.Equal(clock.Now().Add(time.Minute)) ||
		!strings.HasSuffix(retried.States[len(retried.States)-1].Message, "This will be retry 1 of 2.") {
		t.Fatalf("task run with retries: %s start %s %+v", retried.State, retried.StateStartTime, retried.States[len(retried.States)-1])
	}
	if failed.State != "Failed" || !strings.Contains(failed.States[len(failed.States)-1].Message, "marking the task run "+failed.ID+" (no-retries) as failed") {
		t.Fatalf("task run without retries: %s %+v", failed.State, failed.States[len(failed.States)-1])
	}
	if l := lastLog(r); l.Level != "ERROR" || l.TaskRunID != failed.ID || l.Name != "prefect-server.ZombieKiller.TaskRun" {
		t.Fatalf("log line %+v", l)
	}
	if r.State != "Running" {
		t.Fatalf("the flow run itself is %s, want Running", r.State)
	}
	if r, _ := em.FlowRun(resubmitted.ID); r.TaskRuns[0].State != "Failed" {
		t.Fatalf("a Running task run of a Submitted flow run is %s, want Failed", r.TaskRuns[0].State)
	}
	if r, _ := em.FlowRun(cancelling.ID); r.State != "Failed" || r.StateMessage != "No heartbeat detected from the flow run; marking the run as failed." {
		t.Fatalf("silent Cancelling run: %s %q", r.State, r.StateMessage)
	}
	if r, _ := em.FlowRun(alive.ID); r.TaskRuns[0].State != "Running" {
		t.Fatalf("a task run of a run with a fresh heartbeat is %s", r.TaskRuns[0].State)
	}
}

func TestTowelLoopsRunOnTheirPeriod(t *testing.T) {
	em, srv := start(t, Config{})
	run, _ := em.AddFlowRun(FlowRunSpec{})
	em.SetFlowRunState(run.ID, "Submitted", "")
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/emulator/towel/lazarus", strings.NewReader(`{"period": "20ms", "cutoff": "1ms", "attempt_limit": 5}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("configuring Lazarus: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := em.FlowRun(run.ID)
		if r.State == "Scheduled" && r.TimesResurrected == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Lazarus at a 20 ms period did not reschedule the run within 10 s: %s", r.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, _ = http.Get(srv.URL + "/emulator/towel")
	var got map[string]towelJSON
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got["lazarus"].Period != "20ms" || got["lazarus"].AttemptLimit != 5 || got["zombie_killer"].Period != "2m0s" || got["zombie_killer"].Cutoff != "10m0s" {
		t.Fatalf("towel configuration %+v", got)
	}
	em.Close()
	em.Close() // twice is fine
}
