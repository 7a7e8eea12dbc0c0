package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

func start(t *testing.T, cfg Config) (*Emulator, *httptest.Server) {
	t.Helper()
	em, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(em.Close)
	srv := httptest.NewServer(em.Handler())
	t.Cleanup(srv.Close)
	return em, srv
}

func post(t *testing.T, url, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer is not JSON: %s", raw)
	}
	return resp.StatusCode, out
}

func fastClient(srv *httptest.Server, key string) *prefect.Client {
	return prefect.NewClient(prefect.Config{API: srv.URL, APIKey: key, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
}

func TestUnknownFieldIsRejectedWith400(t *testing.T) {
	_, srv := start(t, Config{})
	status, body := post(t, srv.URL, `{"query":"query { flow_run { id no_such_field } }"}`)
	if status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", status)
	}
	errs, _ := body["errors"].([]any)
	if len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), `Cannot query field "no_such_field" on type "flow_run"`) {
		t.Fatalf("errors = %v", body["errors"])
	}
	if _, hasData := body["data"]; hasData {
		t.Fatalf("a validation failure carries no data: %v", body)
	}
}

func TestBadVariablesAreRejectedWith400(t *testing.T) {
	_, srv := start(t, Config{})
	status, body := post(t, srv.URL, `{"query":"mutation($input: get_runs_in_queue_input!) { get_runs_in_queue(input: $input) { flow_run_ids } }","variables":{"input":{"tenant_id":null,"labels":[]}}}`)
	if status != http.StatusBadRequest {
		t.Fatalf("null tenant_id: status %d, want 400 (%v)", status, body)
	}
	status, _ = post(t, srv.URL, `{"query":"mutation($input: get_runs_in_queue_input!) { get_runs_in_queue(input: $input) { flow_run_ids } }","variables":{"input":{"tenant_id":"x","labels":[],"colour":"blue"}}}`)
	if status != http.StatusBadRequest {
		t.Fatalf("unknown input field: status %d, want 400", status)
	}
	status, _ = post(t, srv.URL, `{"query":"query { auth_info { tenant_id } }"}`)
	if status != http.StatusBadRequest {
		t.Fatalf("auth_info on Server: status %d, want 400", status)
	}
}

func TestClientReportsMalformedRequestAsBug(t *testing.T) {
	_, srv := start(t, Config{})
	c := fastClient(srv, "")
	// auth_info is Cloud-only: a Server backend rejects the query itself.
	_, err := prefect.AuthInfoTenant(context.Background(), c.GraphQL())
	var reqErr *prefect.RequestError
	if !errors.As(err, &reqErr) || reqErr.Op != "AuthInfoTenant" {
		t.Fatalf("err = %v, want a RequestError naming AuthInfoTenant", err)
	}
}

func TestCloudRefusesRequestsWithoutKey(t *testing.T) {
	tenant := Tenant{ID: "6f2a4a61-0f3c-4a77-9a7e-2b7f8f1f2e11", Name: "team", Slug: "team"}
	_, srv := start(t, Config{Backend: Cloud, Tenants: []Tenant{tenant}, APIKeys: map[string]string{"pcu_secret": tenant.ID}})
	status, body := post(t, srv.URL, `{"query":"query { hello }"}`)
	if status != http.StatusOK || !strings.Contains(fmt.Sprint(body["errors"]), "UNAUTHENTICATED") {
		t.Fatalf("no key: status %d body %v", status, body)
	}
	_, err := fastClient(srv, "pcu_wrong").ResolveTenant(context.Background(), "cloud")
	if !errors.Is(err, prefect.ErrUnauthenticated) {
		t.Fatalf("wrong key: err = %v", err)
	}
	if strings.Contains(err.Error(), "pcu_wrong") {
		t.Fatalf("the error shows the key: %v", err)
	}
	got, err := fastClient(srv, "pcu_secret").ResolveTenant(context.Background(), "cloud")
	if err != nil || got != tenant.ID {
		t.Fatalf("right key: tenant %q err %v", got, err)
	}
}

func TestCloudVersionLocking(t *testing.T) {
	tenant := Tenant{ID: "6f2a4a61-0f3c-4a77-9a7e-2b7f8f1f2e11", Name: "team", Slug: "team"}
	em, srv := start(t, Config{Backend: Cloud, Tenants: []Tenant{tenant}, APIKeys: map[string]string{"k": tenant.ID}})
	run, _ := em.AddFlowRun(FlowRunSpec{})
	em.SetFlowRunState(run.ID, "Scheduled", "rescheduled")
	stale := run.Version
	err := fastClient(srv, "k").SetFlowRunState(context.Background(), run.ID, &stale, prefect.FailedState("x"))
	if !errors.Is(err, prefect.ErrVersionLocked) || !strings.Contains(err.Error(), "provided version 1 but current version is 2") {
		t.Fatalf("stale version: err = %v", err)
	}
}

func TestQueueFollowsLabelRuleOrderAndLimit(t *testing.T) {
	em, srv := start(t, Config{})
	base := time.Now().Add(-time.Hour).UTC()
	var labelled []string
	for i := 0; i < 30; i++ {
		r, _ := em.AddFlowRun(FlowRunSpec{Labels: []string{"k8s"}, ScheduledStartTime: base.Add(time.Duration(30-i) * time.Second)})
		labelled = append([]string{r.ID}, labelled...)
	}
	unlabelled, _ := em.AddFlowRun(FlowRunSpec{ScheduledStartTime: base})
	otherLabel, _ := em.AddFlowRun(FlowRunSpec{Labels: []string{"gpu"}, ScheduledStartTime: base})
	future, _ := em.AddFlowRun(FlowRunSpec{Labels: []string{"k8s"}, ScheduledStartTime: time.Now().Add(time.Hour)})

	c := fastClient(srv, "")
	ctx := context.Background()
	tenant, err := c.ResolveTenant(ctx, "server")
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.RegisterAgent(ctx, tenant, "agent", "KubernetesAgent", []string{"k8s", "prod"})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := c.RegisterAgent(ctx, tenant, "agent", "KubernetesAgent", []string{"prod", "k8s"})
	if again != id {
		t.Fatalf("same name, type and labels registered twice: %s then %s", id, again)
	}
	ids, err := c.RunsInQueue(ctx, tenant, []string{"k8s", "prod"}, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != strings.Join(labelled[:25], ",") {
		t.Fatalf("labelled agent got %v, want the 25 oldest k8s runs in order %v", ids, labelled[:25])
	}
	for _, not := range []string{unlabelled.ID, otherLabel.ID, future.ID} {
		for _, got := range ids {
			if got == not {
				t.Fatalf("run %s should not be handed to this agent", not)
			}
		}
	}
	ids, _ = c.RunsInQueue(ctx, tenant, nil, time.Now())
	if len(ids) != 1 || ids[0] != unlabelled.ID {
		t.Fatalf("unlabelled agent got %v, want only the unlabelled run", ids)
	}
	agents := em.Agents()
	if len(agents) != 1 || agents[0].LastQueried.IsZero() {
		t.Fatalf("the poll did not record the agent's last query: %+v", agents)
	}
}

func TestRunsToSubmitKeepsScheduledAndRetryingRuns(t *testing.T) {
	em, srv := start(t, Config{})
	past := time.Now().Add(-time.Minute)
	scheduled, _ := em.AddFlowRun(FlowRunSpec{ScheduledStartTime: past, TaskRuns: []TaskRunSpec{{}}})
	running, _ := em.AddFlowRun(FlowRunSpec{ScheduledStartTime: past, TaskRuns: []TaskRunSpec{{State: "Retrying"}}})
	em.SetFlowRunState(running.ID, "Running", "")
	submitted, _ := em.AddFlowRun(FlowRunSpec{ScheduledStartTime: past})
	em.SetFlowRunState(submitted.ID, "Submitted", "")
	runs, err := fastClient(srv, "").RunsToSubmit(context.Background(), []string{scheduled.ID, running.ID, submitted.ID}, time.Now().Add(-3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]prefect.FlowRun{}
	for _, r := range runs {
		got[r.Id] = r
	}
	if len(runs) != 2 || got[scheduled.ID].Id == "" || got[running.ID].Id == "" {
		t.Fatalf("got %d runs %v, want the scheduled and the running one", len(runs), got)
	}
	s := got[scheduled.ID]
	if s.Version != 1 || s.Flow.Core_version != "1.4.1" || len(s.Task_runs) != 1 || prefect.StateType(s.Serialized_state) != "Scheduled" {
		t.Fatalf("scheduled run read back wrong: %+v", s)
	}
}

func TestLogsAreStored(t *testing.T) {
	em, srv := start(t, Config{})
	run, _ := em.AddFlowRun(FlowRunSpec{})
	err := fastClient(srv, "").WriteRunLogs(context.Background(), prefect.RunLog{FlowRunID: run.ID, Name: "agent", Level: prefect.LevelError, Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := em.FlowRun(run.ID)
	if len(got.Logs) != 1 || got.Logs[0].Level != "ERROR" || got.Logs[0].Message != "boom" || got.Logs[0].Name != "agent" {
		t.Fatalf("logs = %+v", got.Logs)
	}
}

func TestInjectedFaultsAreRetriedByTheClient(t *testing.T) {
	em, srv := start(t, Config{})
	em.SetFaults(Faults{ServerErrorRate: 0.3, RateLimitRate: 0.2, Seed: 7})
	c := prefect.NewClient(prefect.Config{API: srv.URL, Backoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 20})
	for i := 0; i < 20; i++ {
		if _, err := prefect.Hello(context.Background(), c.GraphQL()); err != nil {
			t.Fatalf("hello %d: %v", i, err)
		}
	}
	f := em.InjectedFaults()
	if f["5xx"] == 0 || f["429"] == 0 {
		t.Fatalf("no faults were injected: %v", f)
	}
}

func TestControlAPISchedulesAndReadsRuns(t *testing.T) {
	_, srv := start(t, Config{})
	resp, err := http.Post(srv.URL+"/emulator/flow-runs", "application/json", strings.NewReader(`[{"labels":["a"],"run_config":{"type":"KubernetesRun","image":"x"}}]`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("schedule: %v %v", err, resp.Status)
	}
	var runs []FlowRun
	json.NewDecoder(resp.Body).Decode(&runs)
	resp.Body.Close()
	resp, _ = http.Post(srv.URL+"/emulator/flow-runs/"+runs[0].ID+"/state", "application/json", strings.NewReader(`{"type":"Cancelled","message":"by user"}`))
	resp.Body.Close()
	resp, _ = http.Get(srv.URL + "/emulator/flow-runs/" + runs[0].ID)
	var got FlowRun
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got.State != "Cancelled" || got.Version != 2 || string(got.RunConfig) != `{"type":"KubernetesRun","image":"x"}` {
		t.Fatalf("run = %+v", got)
	}
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/emulator/flow-runs/"+runs[0].ID+"/labels", strings.NewReader(`["z","b"]`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("labels: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	resp, _ = http.Post(srv.URL+"/emulator/flow-runs/"+runs[0].ID+"/cancel", "application/json", nil)
	resp.Body.Close()
	resp, _ = http.Get(srv.URL + "/emulator/flow-runs/" + runs[0].ID)
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if strings.Join(got.Labels, ",") != "b,z" || got.Version != 2 {
		t.Fatalf("after new labels and a cancel of a Cancelled run: labels %v version %d", got.Labels, got.Version)
	}
}
