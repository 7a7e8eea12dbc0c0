package prefect

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// StaleTaskRun is a task run that became Running at or before a time.
type StaleTaskRun struct {
	ID      string
	Version int
}

// RunningTaskRunsBefore returns the flow run's state and its task runs that
// are Running since before (or at) a time.
func (c *Client) RunningTaskRunsBefore(ctx context.Context, flowRunID string, before time.Time) (string, []StaleTaskRun, error) {
	resp, err := RunningTaskRuns(ctx, c.gql, flowRunID)
	if err != nil {
		return "", nil, err
	}
	if resp.Flow_run_by_pk == nil {
		return "", nil, nil
	}
	var out []StaleTaskRun
	for _, tr := range resp.Flow_run_by_pk.Task_runs {
		if len(tr.States) > 0 && tr.States[0].Timestamp.After(before) {
			continue
		}
		out = append(out, StaleTaskRun{ID: tr.Id, Version: tr.Version})
	}
	return resp.Flow_run_by_pk.State, out, nil
}

// PendingState is a Pending state with a message: the state a task run is
// created in, which Prefect's task runner runs.
func PendingState(message string) json.RawMessage {
	raw, _ := json.Marshal(baseState("Pending", message))
	return raw
}

// HandBack sets a stale task run Pending at its version. It reports false,
// and no error, when the task run changed meanwhile (a version lock): then
// a live runner has it.
func (c *Client) HandBack(ctx context.Context, tr StaleTaskRun, message string) (bool, error) {
	version := tr.Version
	err := c.SetTaskRunState(ctx, tr.ID, &version, PendingState(message))
	if errors.Is(err, ErrVersionLocked) {
		return false, nil
	}
	return err == nil, err
}
