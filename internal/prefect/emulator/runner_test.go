package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A flow as Flow.serialize() writes it, cut to what Server keeps.
const twoTaskFlow = `{"name": "two", "__version__": "1.4.1", "run_config": {"type": "KubernetesRun", "labels": ["k8s"]},
 "storage": {"type": "Module", "module": "flows.two", "flows": {"two": "flows.two"}, "__version__": "1.4.1"},
 "tasks": [{"slug": "a-1", "name": "a"}, {"slug": "b-1", "name": "b", "cache_key": null}]}`

// runnerQuery posts a query as the Python client does (variables as a JSON string).
func runnerQuery(t *testing.T, url, query string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": "null"})
	status, out := post(t, url, string(body))
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, out)
	}
	return out
}

func TestRunOfRegisteredFlowHasItsTaskRunsAsTheRunnerReadsThem(t *testing.T) {
	em, srv := start(t, Config{})
	f, err := em.RegisterFlow(json.RawMessage(twoTaskFlow), "")
	if err != nil {
		t.Fatal(err)
	}
	run, err := em.CreateFlowRun(RunOfFlow{FlowID: f.ID})
	if err != nil {
		t.Fatal(err)
	}
	if run.State != "Scheduled" || strings.Join(run.Labels, ",") != "k8s" || len(run.TaskRuns) != 2 {
		t.Fatalf("run %s, labels %v, %d task runs; want Scheduled, the run config's labels, two task runs", run.State, run.Labels, len(run.TaskRuns))
	}
	out := runnerQuery(t, srv.URL, fmt.Sprintf(`query { flow_run_by_pk(id: %q) { id context
		task_runs(where: {map_index: {_eq: -1}}) { id version serialized_state map_index task { id slug } }
		flow { project { id name } settings storage run_config } } }`, run.ID))
	if out["errors"] != nil {
		t.Fatal(out["errors"])
	}
	fr := out["data"].(map[string]any)["flow_run_by_pk"].(map[string]any)
	trs := fr["task_runs"].([]any)
	slugs := map[string]bool{}
	for _, item := range trs {
		tr := item.(map[string]any)
		task := tr["task"].(map[string]any)
		slugs[task["slug"].(string)] = true
		state := tr["serialized_state"].(map[string]any)
		if state["type"] != "Pending" || state["message"] != "Task run created" || tr["version"] != float64(0) || tr["map_index"] != float64(-1) {
			t.Errorf("task run %v, want version 0, map index -1, Pending \"Task run created\"", tr)
		}
	}
	if !slugs["a-1"] || !slugs["b-1"] {
		t.Errorf("task slugs %v", slugs)
	}
	flow := fr["flow"].(map[string]any)
	if storage := flow["storage"].(map[string]any); storage["module"] != "flows.two" || flow["settings"] == nil || flow["project"] == nil {
		t.Errorf("flow %v", flow)
	}
}

func TestGetOrCreateTaskRunInfoCreatesMappedChildrenOnce(t *testing.T) {
	em, srv := start(t, Config{})
	f, _ := em.RegisterFlow(json.RawMessage(twoTaskFlow), "")
	run, _ := em.CreateFlowRun(RunOfFlow{FlowID: f.ID})
	task := f.Tasks[0].ID
	ask := func(mapIndex int) map[string]any {
		out := runnerQuery(t, srv.URL, fmt.Sprintf(`mutation { get_or_create_task_run_info(input: {flow_run_id: %q, task_id: %q, map_index: %d}) { id version serialized_state } }`, run.ID, task, mapIndex))
		if out["errors"] != nil {
			t.Fatal(out["errors"])
		}
		return out["data"].(map[string]any)["get_or_create_task_run_info"].(map[string]any)
	}
	parent, child, again := ask(-1), ask(0), ask(0)
	if parent["id"] == child["id"] || child["id"] != again["id"] {
		t.Fatalf("parent %v, child %v, child again %v: want one new child, found the second time", parent["id"], child["id"], again["id"])
	}
	d, ok := em.TaskRunDetails(child["id"].(string))
	if !ok || d.MapIndex != 0 || d.TaskSlug != f.Tasks[0].Slug {
		t.Fatalf("child details %+v", d)
	}
	out := runnerQuery(t, srv.URL, fmt.Sprintf(`mutation { get_or_create_task_run_info(input: {flow_run_id: %q, task_id: "00000000-0000-4000-8000-000000000000"}) { id } }`, run.ID))
	if !strings.Contains(fmt.Sprint(out["errors"]), "Invalid task ID") {
		t.Fatalf("unknown task: %v, want Invalid task ID", out)
	}
	out = runnerQuery(t, srv.URL, fmt.Sprintf(`mutation { set_task_run_name(input: {task_run_id: %q, name: "child-zero"}) { success } }`, child["id"]))
	if d, _ := em.TaskRunDetails(child["id"].(string)); d.Name != "child-zero" || fmt.Sprint(out["data"]) != "map[set_task_run_name:map[success:true]]" {
		t.Fatalf("set_task_run_name: %v, name %q", out, d.Name)
	}
}
