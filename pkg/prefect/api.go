package prefect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Log levels accepted by write_run_logs.
const (
	LevelDebug   = "DEBUG"
	LevelInfo    = "INFO"
	LevelWarning = "WARNING"
	LevelError   = "ERROR"
)

// FlowRun is a flow run the agent may submit, as the metadata query returns it.
type FlowRun = SubmittableRun

// ResolveTenant returns the tenant to work in: the configured one, else for
// Server the first tenant, for Cloud the API key's tenant.
func (c *Client) ResolveTenant(ctx context.Context, backend string) (string, error) {
	if c.cfg.TenantID != "" {
		return c.cfg.TenantID, nil
	}
	if backend == "cloud" {
		if c.cfg.APIKey == "" {
			return "", errors.New("no API key: Prefect Cloud needs --key (or PREFECT__CLOUD__API_KEY)")
		}
		resp, err := AuthInfoTenant(ctx, c.gql)
		if err != nil {
			return "", err
		}
		if resp.Auth_info.Tenant_id == "" {
			return "", errors.New("the API key has no tenant: API tokens from before Prefect 1.0 are not supported, create an API key")
		}
		c.cfg.TenantID = resp.Auth_info.Tenant_id
		return c.cfg.TenantID, nil
	}
	resp, err := DefaultServerTenant(ctx, c.gql)
	if err != nil {
		return "", err
	}
	if len(resp.Tenant) == 0 {
		return "", errors.New("your Prefect Server instance has no tenants: create one with `prefect server create-tenant`")
	}
	return resp.Tenant[0].Id, nil
}

// RegisterAgent registers the agent and makes later requests carry its id.
func (c *Client) RegisterAgent(ctx context.Context, tenantID, name, agentType string, labels []string) (string, error) {
	resp, err := RegisterAgent(ctx, c.gql, Register_agent_input{
		Tenant_id: tenantID, Labels: nonNil(labels), Type: agentType, Name: name,
	})
	if err != nil {
		return "", err
	}
	if resp.Register_agent.Id == "" {
		return "", errors.New("error registering agent: the API returned no agent id")
	}
	c.SetAgentID(resp.Register_agent.Id)
	return resp.Register_agent.Id, nil
}

// RunsInQueue polls for the ids of runs due before the given time.
func (c *Client) RunsInQueue(ctx context.Context, tenantID string, labels []string, before time.Time) ([]string, error) {
	resp, err := GetRunsInQueue(ctx, c.gql, Get_runs_in_queue_input{Tenant_id: tenantID, Before: before.UTC(), Labels: nonNil(labels)})
	if err != nil {
		return nil, err
	}
	return resp.Get_runs_in_queue.Flow_run_ids, nil
}

// RunsToSubmit reads the runs among ids that are still Scheduled, or Running
// with task runs due for a retry before retryBuffer.
func (c *Client) RunsToSubmit(ctx context.Context, ids []string, retryBuffer time.Time) ([]FlowRun, error) {
	resp, err := FlowRunsToSubmit(ctx, c.gql, nonNil(ids), retryBuffer.UTC())
	if err != nil {
		return nil, err
	}
	out := make([]FlowRun, 0, len(resp.Flow_run))
	for _, r := range resp.Flow_run {
		out = append(out, r.SubmittableRun)
	}
	return out, nil
}

// SetFlowRunState sets one flow run's state. A nil version skips version locking.
func (c *Client) SetFlowRunState(ctx context.Context, id string, version *int, state json.RawMessage) error {
	_, err := SetFlowRunStates(ctx, c.gql, Set_flow_run_states_input{States: []Set_flow_run_state_input{{
		Flow_run_id: id, Version: version, State: state,
	}}})
	return err
}

// SetTaskRunState sets one task run's state.
func (c *Client) SetTaskRunState(ctx context.Context, id string, version *int, state json.RawMessage) error {
	_, err := SetTaskRunStates(ctx, c.gql, Set_task_run_states_input{States: []Set_task_run_state_input{{
		Task_run_id: id, Version: version, State: state,
	}}})
	return err
}

// RunLog is one log line for a flow run.
type RunLog struct {
	FlowRunID string
	Name      string
	Level     string
	Message   string
	Time      time.Time
}

// WriteRunLogs writes log lines to their flow runs.
func (c *Client) WriteRunLogs(ctx context.Context, logs ...RunLog) error {
	in := make([]Write_run_log_input, 0, len(logs))
	for _, l := range logs {
		item := Write_run_log_input{Flow_run_id: l.FlowRunID, Name: l.Name, Level: Log_level(l.Level), Message: l.Message}
		if !l.Time.IsZero() {
			t := l.Time.UTC()
			item.Timestamp = &t
		}
		in = append(in, item)
	}
	resp, err := WriteRunLogs(ctx, c.gql, Write_run_logs_input{Logs: in})
	if err != nil {
		return err
	}
	if !resp.Write_run_logs.Success {
		return fmt.Errorf("prefect API WriteRunLogs: writing logs failed")
	}
	return nil
}

// RunState is a flow run's current state.
type RunState struct {
	ID      string
	Version int
	State   string
}

// FlowRunStates reads the current states of many runs at once. Runs that do
// not exist are missing from the answer.
func (c *Client) FlowRunStates(ctx context.Context, ids []string) (map[string]RunState, error) {
	resp, err := FlowRunStates(ctx, c.gql, nonNil(ids))
	if err != nil {
		return nil, err
	}
	out := make(map[string]RunState, len(resp.Flow_run))
	for _, r := range resp.Flow_run {
		out[r.Id] = RunState{ID: r.Id, Version: r.Version, State: r.State}
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
