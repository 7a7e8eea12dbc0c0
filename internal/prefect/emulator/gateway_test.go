package emulator

import (
	"strings"
	"testing"
	"time"
)

func gatewayErrorOf(t *testing.T, body map[string]any) (message string) {
	t.Helper()
	errs, _ := body["errors"].([]any)
	if len(errs) != 1 {
		t.Fatalf("errors %v, want one", body["errors"])
	}
	e := errs[0].(map[string]any)
	if code := e["extensions"].(map[string]any)["code"]; code != "INTERNAL_SERVER_ERROR" {
		t.Fatalf("code %v, want INTERNAL_SERVER_ERROR", code)
	}
	return e["message"].(string)
}

func TestGatewayErrorsBeforeAndAfterApplying(t *testing.T) {
	em, srv := start(t, Config{})
	run, _ := em.AddFlowRun(FlowRunSpec{})
	mark := `{"query":"mutation($id: UUID!) { set_flow_run_states(input: {states: [{flow_run_id: $id, state: {type: \"Submitted\", message: \"m\"}}]}) { states { status } } }","variables":{"id":"` + run.ID + `"}}`

	em.SetFaults(Faults{GatewayErrorRate: 1})
	status, body := post(t, srv.URL, mark)
	msg := gatewayErrorOf(t, body)
	if status != 200 || !strings.HasPrefix(msg, "request to http://graphql:4201/graphql/ failed, reason: connect ECONNREFUSED") {
		t.Fatalf("HTTP %d, message %q", status, msg)
	}
	if d, ok := body["data"].(map[string]any); !ok || d["set_flow_run_states"] != nil || len(d) != 1 {
		t.Fatalf("data %v, want {set_flow_run_states: null} (the field is nullable)", body["data"])
	}
	status, body = post(t, srv.URL, `{"query":"query { flow_run { id } }"}`)
	if msg := gatewayErrorOf(t, body); status != 200 || !strings.Contains(msg, "http://hasura:3000/v1alpha1/graphql") || body["data"] != nil {
		t.Fatalf("a Hasura query: HTTP %d %q data %v, want data null (flow_run is non-null)", status, msg, body["data"])
	}
	if got, _ := em.FlowRun(run.ID); got.State != "Scheduled" {
		t.Fatalf("a request failed before applying changed the run: %s", got.State)
	}

	em.SetFaults(Faults{GatewayErrorRate: 1, GatewayErrorApplyShare: 1})
	_, body = post(t, srv.URL, mark)
	if msg := gatewayErrorOf(t, body); msg != "request to http://graphql:4201/graphql/ failed, reason: socket hang up" {
		t.Fatalf("after applying: %q", msg)
	}
	if got, _ := em.FlowRun(run.ID); got.State != "Submitted" {
		t.Fatalf("the request failed after applying left the run %s, want Submitted", got.State)
	}
	if f := em.InjectedFaults(); f[faultGateway] != 2 || f[faultApplyGate] != 1 {
		t.Fatalf("injected %v", f)
	}
}

func TestHoldKeepsMatchingRequestsThenAppliesThem(t *testing.T) {
	em, srv := start(t, Config{})
	slow, _ := em.AddFlowRun(FlowRunSpec{})
	other, _ := em.AddFlowRun(FlowRunSpec{})
	const hold = 300 * time.Millisecond
	em.SetFaults(Faults{Holds: []Hold{{Field: "set_flow_run_states", StateType: "Submitted", AgentID: "agent-a", For: hold}}})
	began := time.Now()
	if msg := setState(t, srv.URL, slow.ID, 1, "Submitted", "X-Prefect-Agent-Id", "agent-a"); msg != "" {
		t.Fatal(msg)
	}
	if took := time.Since(began); took < hold {
		t.Fatalf("the held mark was answered after %s, want at least %s", took, hold)
	}
	setState(t, srv.URL, other.ID, 1, "Submitted", "X-Prefect-Agent-Id", "agent-b")
	setState(t, srv.URL, other.ID, 2, "Failed", "X-Prefect-Agent-Id", "agent-a")
	if got, _ := em.FlowRun(slow.ID); got.State != "Submitted" {
		t.Fatalf("the held mark was not applied: %s", got.State)
	}
	if f := em.InjectedFaults(); f[faultHeld] != 1 || f[faultHeldApplied] != 1 {
		t.Fatalf("held %d requests (%d applied), want only agent-a's Submitted mark", f[faultHeld], f[faultHeldApplied])
	}
}
