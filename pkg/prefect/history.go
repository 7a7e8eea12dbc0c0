package prefect

import (
	"context"
	"encoding/json"
	"fmt"
)

// RunHistory is a flow run's current state with its state history in the
// claim rule's order, and the histories of the task runs asked for.
type RunHistory struct {
	ID         string
	Version    int
	State      string
	Serialized json.RawMessage
	Rows       []StateRow
	TaskRuns   map[string]TaskHistory
}

// TaskHistory is a task run's current state and state history.
type TaskHistory struct {
	ID         string
	Version    int
	State      string
	Serialized json.RawMessage
	Rows       []StateRow
}

// Current returns the history row that is the run's current state.
func (h RunHistory) Current() (StateRow, bool) {
	return CurrentRow(h.Rows, h.Version, h.State, h.Serialized)
}

// Current returns the history row that is the task run's current state.
func (h TaskHistory) Current() (StateRow, bool) {
	return CurrentRow(h.Rows, h.Version, h.State, h.Serialized)
}

// ErrNoRun is returned for a run that does not exist (any more).
var ErrNoRun = fmt.Errorf("the flow run does not exist (any more)")

// ReadHistory reads a flow run's state history and those of the given task
// runs of it.
func (c *Client) ReadHistory(ctx context.Context, id string, taskRunIDs []string) (RunHistory, error) {
	resp, err := FlowRunHistory(ctx, c.gql, id, nonNil(taskRunIDs))
	if err != nil {
		return RunHistory{}, err
	}
	r := resp.Flow_run_by_pk
	if r == nil {
		return RunHistory{}, fmt.Errorf("flow run %s: %w", id, ErrNoRun)
	}
	h := RunHistory{ID: r.Id, Version: r.Version, State: r.State, Serialized: r.Serialized_state, TaskRuns: map[string]TaskHistory{}}
	for _, s := range r.States {
		h.Rows = append(h.Rows, StateRow{ID: s.Id, Version: s.Version, State: s.State, Timestamp: s.Timestamp, Serialized: s.Serialized_state})
	}
	SortHistory(h.Rows)
	for _, tr := range r.Task_runs {
		th := TaskHistory{ID: tr.Id, Version: tr.Version, State: tr.State, Serialized: tr.Serialized_state}
		for _, s := range tr.States {
			th.Rows = append(th.Rows, StateRow{ID: s.Id, Version: s.Version, State: s.State, Timestamp: s.Timestamp, Serialized: s.Serialized_state})
		}
		SortHistory(th.Rows)
		h.TaskRuns[tr.Id] = th
	}
	return h, nil
}

// Heartbeat moves a flow run's heartbeat to now, as its flow runner would.
func (c *Client) Heartbeat(ctx context.Context, id string) error {
	resp, err := UpdateFlowRunHeartbeat(ctx, c.gql, id)
	if err != nil {
		return err
	}
	if !resp.Update_flow_run_heartbeat.Success {
		return fmt.Errorf("prefect API UpdateFlowRunHeartbeat: not accepted for flow run %s", id)
	}
	return nil
}
