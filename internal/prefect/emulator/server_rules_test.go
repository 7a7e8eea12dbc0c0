package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// setState sends one set_flow_run_states request and returns the error
// message, "" when the state was set.
func setState(t *testing.T, url, runID string, version int, stateType string, headers ...string) string {
	t.Helper()
	body := fmt.Sprintf(`{"query":"mutation($id: UUID!, $v: Int, $s: JSON!) { set_flow_run_states(input: {states: [{flow_run_id: $id, version: $v, state: $s}]}) { states { status } } }",
		"variables": {"id": %q, "v": %d, "s": {"type": %q, "message": "by the test"}}}`, runID, version, stateType)
	status, out := post(t, url, strings.ReplaceAll(body, "\n", ""), headers...)
	if status != 200 {
		t.Fatalf("set %s: HTTP %d %v", stateType, status, out)
	}
	if errs, ok := out["errors"].([]any); ok && len(errs) > 0 {
		e := errs[0].(map[string]any)
		if code := e["extensions"].(map[string]any)["code"]; code != "INTERNAL_SERVER_ERROR" {
			t.Fatalf("set %s: error code %v, want Server's INTERNAL_SERVER_ERROR", stateType, code)
		}
		return e["message"].(string)
	}
	return ""
}

const alreadySubmitted = "State update failed: this run has already been submitted."

func TestSubmittedLockIsThirtySecondsPerReplicaWhateverTheState(t *testing.T) {
	clock := newTestClock()
	em, srv := start(t, Config{Now: clock.Now, Replicas: 2})
	run, _ := em.AddFlowRun(FlowRunSpec{})
	// Requests go to replica 0, 1, 0, 1, ... in turn.
	if msg := setState(t, srv.URL, run.ID, 1, "Submitted"); msg != "" { // replica 0
		t.Fatalf("first mark: %s", msg)
	}
	if msg := setState(t, srv.URL, run.ID, 1, "Submitted"); msg != "" { // replica 1 knows no lock
		t.Fatalf("a mark on the other replica was refused: %s", msg)
	}
	clock.Add(20 * time.Second)
	for i := range 2 { // both replicas now hold the lock
		if msg := setState(t, srv.URL, run.ID, 1, "Submitted"); msg != alreadySubmitted {
			t.Fatalf("mark %d within 30 s: %q, want %q", i, msg, alreadySubmitted)
		}
	}
	if _, err := em.CancelFlowRun(run.ID, ""); err != nil {
		t.Fatal(err)
	}
	clock.Add(10 * time.Second)                                         // 30 s after replica 0's lock, 10 s after the refused marks
	if msg := setState(t, srv.URL, run.ID, 1, "Submitted"); msg != "" { // replica 0: a refusal did not extend the lock
		t.Fatalf("a mark 30 s after the first was refused: %s", msg)
	}
	got, _ := em.FlowRun(run.ID)
	var states []string
	for _, s := range got.States {
		states = append(states, s.Type)
	}
	if strings.Join(states, ",") != "Scheduled,Submitted,Submitted,Cancelled,Submitted" || got.State != "Submitted" || got.Version != 5 {
		t.Fatalf("history %v, state %s, version %d: a stale mark must be accepted over Cancelled", states, got.State, got.Version)
	}
	em.SetFlowRunState(run.ID, "Success", "done")
	clock.Add(15 * time.Second)
	if msg := setState(t, srv.URL, run.ID, 1, "Submitted"); msg != "" { // replica 1, its lock expired too
		t.Fatalf("a mark over Success after the lock: %s", msg)
	}
	if msg := setState(t, srv.URL, run.ID, 1, "Submitted"); msg != alreadySubmitted { // replica 0, locked 15 s ago
		t.Fatalf("replica 0 within its lock: %q", msg)
	}
	em.RestartGraphQL()
	if msg := setState(t, srv.URL, run.ID, 1, "Submitted"); msg != "" {
		t.Fatalf("a restarted replica remembers its lock: %s", msg)
	}
}

func TestServerIgnoresVersionsAndNullsStartTimes(t *testing.T) {
	clock := newTestClock()
	em, srv := start(t, Config{Now: clock.Now})
	scheduled := clock.Now().Add(-time.Minute)
	run, _ := em.AddFlowRun(FlowRunSpec{ScheduledStartTime: scheduled})
	if got, _ := em.FlowRun(run.ID); !got.StateStartTime.Equal(scheduled) {
		t.Fatalf("a Scheduled run starts at %s, want its scheduled start %s", got.StateStartTime, scheduled)
	}
	if msg := setState(t, srv.URL, run.ID, 1, "Running"); msg != "" {
		t.Fatal(msg)
	}
	if msg := setState(t, srv.URL, run.ID, 1, "Failed"); msg != "" { // stale version: ignored on Server
		t.Fatalf("a stale version was refused on Server: %s", msg)
	}
	got, _ := em.FlowRun(run.ID)
	if got.Version != 3 || got.State != "Failed" || !got.StateStartTime.IsZero() {
		t.Fatalf("version %d state %s state_start_time %s, want 3, Failed, NULL", got.Version, got.State, got.StateStartTime)
	}
	_, body := gql(t, srv.URL, `query($id: uuid!) { flow_run_by_pk(id: $id) { state_start_time } }`, map[string]any{"id": run.ID})
	if v := data(t, body, "flow_run_by_pk", "state_start_time"); v != nil {
		t.Fatalf("state_start_time of a Failed run is %v, want null", v)
	}
	clock.Add(time.Minute)
	em.SetFlowRunState(run.ID, "Scheduled", "again")
	if got, _ := em.FlowRun(run.ID); !got.StateStartTime.Equal(clock.Now()) {
		t.Fatalf("a Scheduled state without a start time starts now (%s), got %s", clock.Now(), got.StateStartTime)
	}
	if msg := setState(t, srv.URL, "7d3a0f0e-0000-4000-8000-000000000000", 1, "Failed"); msg != "State update failed for flow run ID 7d3a0f0e-0000-4000-8000-000000000000" {
		t.Fatalf("unknown run: %q", msg)
	}
}

func TestQueueTakesSeventyFiveOldestThenFiltersLabels(t *testing.T) {
	clock := newTestClock()
	em, srv := start(t, Config{Now: clock.Now})
	base := clock.Now().Add(-time.Hour)
	for i := range 75 { // late runs of a label no agent here serves
		em.AddFlowRun(FlowRunSpec{Labels: []string{"gpu"}, ScheduledStartTime: base.Add(time.Duration(i) * time.Second)})
	}
	var mine []string
	for i := range 30 {
		r, _ := em.AddFlowRun(FlowRunSpec{Labels: []string{"k8s"}, ScheduledStartTime: base.Add(time.Duration(100+i) * time.Second)})
		mine = append(mine, r.ID)
	}
	// A Running run with a due task run: its state has no start time, so it
	// sorts after every due Scheduled run.
	running, _ := em.AddFlowRun(FlowRunSpec{Labels: []string{"k8s"}, ScheduledStartTime: base.Add(-time.Hour), TaskRuns: []TaskRunSpec{{}}})
	em.SetFlowRunState(running.ID, "Running", "")
	em.SetTaskRunState(running.TaskRuns[0].ID, "Retrying", "", base)
	c := fastClient(srv, "")
	tenant := em.DefaultTenant().ID
	ids, err := c.RunsInQueue(t.Context(), tenant, []string{"k8s"}, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Fatalf("behind 75 older runs of another label the agent got %d runs, want none (Server starves it)", len(ids))
	}
	// Three of the foreign runs are taken: three of ours enter the window.
	gpu := 0
	for _, r := range em.FlowRuns() {
		if len(r.Labels) == 1 && r.Labels[0] == "gpu" && gpu < 3 {
			em.SetFlowRunState(r.ID, "Submitted", "")
			gpu++
		}
	}
	ids, _ = c.RunsInQueue(t.Context(), tenant, []string{"k8s"}, clock.Now())
	if strings.Join(ids, ",") != strings.Join(mine[:3], ",") {
		t.Fatalf("got %v, want the 3 oldest of ours %v", ids, mine[:3])
	}
	// With the foreign backlog gone: 25 of ours, the Running run last.
	for _, r := range em.FlowRuns() {
		if len(r.Labels) == 1 && r.Labels[0] == "gpu" {
			em.SetFlowRunState(r.ID, "Submitted", "")
		}
	}
	for _, id := range mine[:10] {
		em.SetFlowRunState(id, "Submitted", "")
	}
	ids, _ = c.RunsInQueue(t.Context(), tenant, []string{"k8s"}, clock.Now())
	want := append(append([]string{}, mine[10:]...), running.ID)
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v,\nwant %v (Scheduled oldest first, the Running run after them)", ids, want)
	}
}

func TestCancelFollowsServerAndCancelsTaskRuns(t *testing.T) {
	em, _ := start(t, Config{})
	run, _ := em.AddFlowRun(FlowRunSpec{TaskRuns: []TaskRunSpec{{}, {State: "Success"}}})
	got, err := em.CancelFlowRun(run.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "Cancelled" || got.StateMessage != "Flow run is cancelled" || got.TaskRuns[0].State != "Cancelled" || got.TaskRuns[1].State != "Success" {
		t.Fatalf("cancel of a Scheduled run: %s %q, task runs %s %s", got.State, got.StateMessage, got.TaskRuns[0].State, got.TaskRuns[1].State)
	}
	if again, _ := em.CancelFlowRun(run.ID, ""); again.Version != got.Version {
		t.Fatal("cancelling a finished run changed it")
	}
	running, _ := em.AddFlowRun(FlowRunSpec{TaskRuns: []TaskRunSpec{{}}})
	em.SetFlowRunState(running.ID, "Running", "")
	got, _ = em.CancelFlowRun(running.ID, "stop it")
	if got.State != "Cancelling" || got.StateMessage != "stop it" || got.TaskRuns[0].State != "Scheduled" {
		t.Fatalf("cancel of a Running run: %s %q, task run %s", got.State, got.StateMessage, got.TaskRuns[0].State)
	}
}

func TestAgentIDOnlyForAnExistingAgent(t *testing.T) {
	clock := newTestClock()
	em, srv := start(t, Config{Now: clock.Now})
	c := fastClient(srv, "")
	id, err := c.RegisterAgent(t.Context(), em.DefaultTenant().ID, "a", "KubernetesAgent", nil)
	if err != nil {
		t.Fatal(err)
	}
	run, _ := em.AddFlowRun(FlowRunSpec{})
	ghost, _ := em.AddFlowRun(FlowRunSpec{})
	setState(t, srv.URL, run.ID, 1, "Submitted", "X-Prefect-Agent-Id", id)
	setState(t, srv.URL, ghost.ID, 1, "Submitted", "X-Prefect-Agent-Id", "7d3a0f0e-0000-4000-8000-000000000000")
	if got, _ := em.FlowRun(run.ID); got.AgentID != id {
		t.Fatalf("agent_id %q, want %q", got.AgentID, id)
	}
	if got, _ := em.FlowRun(ghost.ID); got.AgentID != "" {
		t.Fatalf("a mark under an unknown agent set agent_id %q", got.AgentID)
	}
	if err := em.DeleteAgent(id); err != nil {
		t.Fatal(err)
	}
	if got, _ := em.FlowRun(run.ID); got.AgentID != "" {
		t.Fatalf("agent_id %q after the agent was deleted, want NULL", got.AgentID)
	}
	clock.Add(DefaultSubmittedLock)
	setState(t, srv.URL, run.ID, 2, "Submitted", "X-Prefect-Agent-Id", id)
	if got, _ := em.FlowRun(run.ID); got.AgentID != "" || got.Version != 3 {
		t.Fatalf("a mark under a deleted agent: agent_id %q version %d", got.AgentID, got.Version)
	}
}

func TestWritesInTheInsertGapGetTheSameVersion(t *testing.T) {
	em, srv := start(t, Config{StateInsertDelay: 300 * time.Millisecond})
	run, _ := em.AddFlowRun(FlowRunSpec{})
	done := make(chan error, 2)
	for _, state := range []string{"Submitted", "Cancelled"} {
		go func() {
			body := fmt.Sprintf(`{"query":"mutation { set_flow_run_states(input: {states: [{flow_run_id: \"%s\", state: {type: \"%s\"}}]}) { states { status } } }"}`, run.ID, state)
			resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
			if err == nil {
				var out map[string]any
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if err == nil && out["errors"] != nil {
					err = fmt.Errorf("%s: %v", state, out["errors"])
				}
			}
			done <- err
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	got, _ := em.FlowRun(run.ID)
	if len(got.States) != 3 || got.States[1].Version != 2 || got.States[2].Version != 2 || got.Version != 2 {
		t.Fatalf("two writes in the gap: versions %d and %d, run version %d; want 2, 2 and 2", got.States[1].Version, got.States[2].Version, got.Version)
	}
	if got.State != got.States[2].Type {
		t.Fatalf("the run is %s, want the last committed state %s (the trigger takes a version at least the stored one)", got.State, got.States[2].Type)
	}
}
