package emulator

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// data digs a value out of a GraphQL answer by keys and list indexes.
func data(t *testing.T, body map[string]any, path ...any) any {
	t.Helper()
	if errs, ok := body["errors"]; ok {
		t.Fatalf("errors in the answer: %v", errs)
	}
	var v any = body["data"]
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: %v is not an object", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at [%d]: %v is not a long enough list", k, v)
			}
			v = l[k]
		}
	}
	return v
}

// gql posts a query with variables; newlines in the query are fine.
func gql(t *testing.T, url, query string, vars map[string]any) (int, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	return post(t, url, string(raw))
}

// column lists one column of a list of rows, as text.
func column(rows any, name string) string {
	var out []string
	for _, r := range rows.([]any) {
		out = append(out, fmt.Sprint(r.(map[string]any)[name]))
	}
	return strings.Join(out, ",")
}

func TestStateHistoryKeepsEveryStateAndFollowsHasura(t *testing.T) {
	em, srv := start(t, Config{})
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	run, _ := em.AddFlowRun(FlowRunSpec{ScheduledStartTime: start, TaskRuns: []TaskRunSpec{{}}})
	status, body := post(t, srv.URL, `{"query":"mutation($id: UUID!, $s: JSON!) { set_flow_run_states(input: {states: [{flow_run_id: $id, version: 1, state: $s}]}) { states { status } } }",
		"variables": {"id": "`+run.ID+`", "s": {"type": "Submitted", "message": "Submitted for execution", "context": {"submitted_by": "me"}}}}`)
	if status != 200 || data(t, body, "set_flow_run_states", "states", 0, "status") != "SUCCESS" {
		t.Fatalf("mark: %d %v", status, body)
	}
	em.SetFlowRunState(run.ID, "Running", "Running flow.")
	em.SetFlowRunState(run.ID, "Success", "All reference tasks succeeded.")

	_, body = gql(t, srv.URL, `query($id: uuid!) { flow_run_by_pk(id: $id) { version heartbeat times_resurrected
		all: states { id flow_run_id version state message start_time timestamp serialized_state }
		last2: states(order_by: [{version: desc}], limit: 2) { version state }
		skip: states(order_by: {version: asc}, offset: 1, limit: 1) { state }
		early: states(where: {_and: [{version: {_lte: 2}}, {start_time: {_is_null: false}}]}) { state start_time }
		nullsFirst: states(order_by: [{start_time: asc_nulls_first}, {version: asc}]) { state }
		byStart: states(order_by: [{start_time: asc}, {version: desc}]) { state } } }`, map[string]any{"id": run.ID})
	r := data(t, body, "flow_run_by_pk").(map[string]any)
	all := r["all"]
	if got := column(all, "state"); got != "Scheduled,Submitted,Running,Success" {
		t.Fatalf("history %s, want every state in order", got)
	}
	if got := column(all, "version"); got != "1,2,3,4" {
		t.Fatalf("versions %s", got)
	}
	if got := column(all, "flow_run_id"); got != strings.Repeat(run.ID+",", 3)+run.ID {
		t.Fatalf("flow_run_id %s", got)
	}
	rows := all.([]any)
	if rows[0].(map[string]any)["start_time"] != formatTime(start) || rows[1].(map[string]any)["start_time"] != nil {
		t.Fatalf("start_time: Scheduled %v (want %s), Submitted %v (want null)", rows[0].(map[string]any)["start_time"], formatTime(start), rows[1].(map[string]any)["start_time"])
	}
	ctx := rows[1].(map[string]any)["serialized_state"].(map[string]any)["context"].(map[string]any)
	if ctx["submitted_by"] != "me" || rows[1].(map[string]any)["message"] != "Submitted for execution" {
		t.Fatalf("the Submitted row lost what was sent: %v", rows[1])
	}
	if ids := column(all, "id"); len(strings.Split(ids, ",")) != 4 || strings.Contains(ids, "<nil>") {
		t.Fatalf("state ids %s", ids)
	}
	if got := column(r["last2"], "state"); got != "Success,Running" {
		t.Fatalf("order_by version desc limit 2: %s", got)
	}
	if got := column(r["skip"], "state"); got != "Submitted" {
		t.Fatalf("offset 1 limit 1: %s", got)
	}
	if got := column(r["early"], "state"); got != "Scheduled" {
		t.Fatalf("where version <= 2 and start_time not null: %s", got)
	}
	if got := column(r["nullsFirst"], "state"); got != "Submitted,Running,Success,Scheduled" {
		t.Fatalf("start_time asc_nulls_first: %s", got)
	}
	if got := column(r["byStart"], "state"); got != "Scheduled,Success,Running,Submitted" {
		t.Fatalf("start_time asc (nulls last), then version desc: %s", got)
	}
	if r["version"] != float64(4) || r["times_resurrected"] != float64(0) || r["heartbeat"] == nil {
		t.Fatalf("run: version %v times_resurrected %v heartbeat %v", r["version"], r["times_resurrected"], r["heartbeat"])
	}

	status, body = post(t, srv.URL, `{"query":"query { flow_run { states(order_by: [{version: asc, state: asc}]) { id } } }"}`)
	if status != 200 || !strings.Contains(fmt.Sprint(body["errors"]), "one-column") {
		t.Fatalf("an order_by object with two columns: %d %v", status, body)
	}

	tr := run.TaskRuns[0]
	em.SetTaskRunState(tr.ID, "Running", "", time.Time{})
	em.SetTaskRunState(tr.ID, "Retrying", "Retrying task.", start.Add(time.Hour))
	_, body = post(t, srv.URL, `{"query":"query($id: uuid!) { flow_run_by_pk(id: $id) { task_runs { heartbeat states(where: {state: {_neq: \"Running\"}}, order_by: [{version: desc}]) { task_run_id state start_time } } } }","variables":{"id":"`+run.ID+`"}}`)
	trow := data(t, body, "flow_run_by_pk", "task_runs", 0).(map[string]any)
	if got := column(trow["states"], "state"); got != "Retrying,Scheduled" {
		t.Fatalf("task run history %s", got)
	}
	if got := column(trow["states"], "task_run_id"); got != tr.ID+","+tr.ID {
		t.Fatalf("task_run_id %s", got)
	}
	if trow["heartbeat"] == nil {
		t.Fatal("a Running task run state did not move the task run's heartbeat")
	}
}

func TestHeartbeatsMoveOnSubmittedRunningAndTheMutation(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	em, srv := start(t, Config{Now: clock})
	run, _ := em.AddFlowRun(FlowRunSpec{TaskRuns: []TaskRunSpec{{}}})
	if got, _ := em.FlowRun(run.ID); !got.Heartbeat.IsZero() {
		t.Fatalf("a Scheduled run has heartbeat %s, want none", got.Heartbeat)
	}
	steps := []struct {
		state string
		moves bool
	}{{"Submitted", true}, {"Running", true}, {"Cancelling", true}, {"Scheduled", false}, {"Failed", false}}
	for _, s := range steps {
		now = now.Add(time.Minute)
		em.SetFlowRunState(run.ID, s.state, "")
		got, _ := em.FlowRun(run.ID)
		if moved := got.Heartbeat.Equal(now); moved != s.moves {
			t.Fatalf("%s: heartbeat %s at %s, want moved=%v", s.state, got.Heartbeat, now, s.moves)
		}
	}
	now = now.Add(time.Minute)
	status, body := post(t, srv.URL, `{"query":"mutation($id: UUID!) { update_flow_run_heartbeat(input: {flow_run_id: $id}) { success } }","variables":{"id":"`+run.ID+`"}}`)
	if status != 200 || data(t, body, "update_flow_run_heartbeat", "success") != true {
		t.Fatalf("heartbeat: %d %v", status, body)
	}
	if got, _ := em.FlowRun(run.ID); !got.Heartbeat.Equal(now) {
		t.Fatalf("heartbeat %s after update_flow_run_heartbeat at %s", got.Heartbeat, now)
	}
	_, body = post(t, srv.URL, `{"query":"mutation { update_flow_run_heartbeat(input: {flow_run_id: \"7d3a0f0e-0000-4000-8000-000000000000\"}) { success } }"}`)
	if data(t, body, "update_flow_run_heartbeat", "success") != true {
		t.Fatalf("Server answers success for an unknown run too (the update runs in the background): %v", body)
	}
	_, body = post(t, srv.URL, `{"query":"mutation($id: UUID!) { update_task_run_heartbeat(input: {task_run_id: $id}) { success } }","variables":{"id":"`+run.TaskRuns[0].ID+`"}}`)
	if data(t, body, "update_task_run_heartbeat", "success") != true {
		t.Fatalf("task run heartbeat: %v", body)
	}
	got, _ := em.FlowRun(run.ID)
	if !got.TaskRuns[0].Heartbeat.Equal(now) {
		t.Fatalf("task run heartbeat %s, want %s", got.TaskRuns[0].Heartbeat, now)
	}
	_, body = post(t, srv.URL, `{"query":"query { flow_run(where: {heartbeat: {_lte: \"`+formatTime(now)+`\"}, times_resurrected: {_eq: 0}}) { id heartbeat } }"}`)
	if column(data(t, body, "flow_run"), "id") != run.ID {
		t.Fatalf("filtering on heartbeat and times_resurrected: %v", body)
	}
}
