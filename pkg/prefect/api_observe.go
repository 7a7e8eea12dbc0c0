package prefect

import (
	"context"
	"encoding/json"
	"time"
)

// RunOverview is what `kubectl prefect runs` shows of a flow run.
type RunOverview struct {
	ID, Name, Flow, State string
	// StateTimestamp is when the current state was set.
	StateTimestamp time.Time
	// By is the submission of the run's latest Submitted mark: its current
	// state's if Submitted, else the latest in its history (zero if none
	// records one).
	By Submission
}

// RunsOverview reads, in one request, the runs among ids and, when
// agentName is not empty, the runs Prefect shows Submitted or Running by the
// agent registered with that name and these labels (in any order).
func (c *Client) RunsOverview(ctx context.Context, ids []string, agentName string, agentLabels []string) ([]RunOverview, error) {
	if agentName == "" {
		agentName = "\x00" // no agent has this name: only ids match
	}
	labels, err := json.Marshal(nonNil(agentLabels))
	if err != nil {
		return nil, err
	}
	resp, err := RunsOverview(ctx, c.gql, nonNil(ids), agentName, labels)
	if err != nil {
		return nil, err
	}
	out := make([]RunOverview, 0, len(resp.Flow_run))
	for _, r := range resp.Flow_run {
		o := RunOverview{ID: r.Id, Name: r.Name, Flow: r.Flow.Name, State: r.State, StateTimestamp: r.State_timestamp}
		if r.State == "Submitted" {
			o.By, _ = SubmittedBy(r.Serialized_state)
		} else if len(r.States) > 0 {
			// A run past its mark (Running...) was submitted by its latest one.
			o.By, _ = SubmittedBy(r.States[0].Serialized_state)
		}
		out = append(out, o)
	}
	return out, nil
}

// RunLogLine is one line of a flow run's log.
type RunLogLine struct {
	Time                 time.Time
	Level, Name, Message string
}

// RunLogPage is a page of a run's log with the run's current state.
type RunLogPage struct {
	Name, State string
	Lines       []RunLogLine
}

// RunLogs reads up to limit lines of a run's log written at or after since,
// oldest first; false when the run does not exist.
func (c *Client) RunLogs(ctx context.Context, id string, since time.Time, limit int) (RunLogPage, bool, error) {
	resp, err := RunLogs(ctx, c.gql, id, since.UTC(), limit)
	if err != nil {
		return RunLogPage{}, false, err
	}
	if len(resp.Flow_run) == 0 {
		return RunLogPage{}, false, nil
	}
	r := resp.Flow_run[0]
	page := RunLogPage{Name: r.Name, State: r.State}
	for _, l := range r.Logs {
		page.Lines = append(page.Lines, RunLogLine{Time: l.Timestamp, Level: l.Level, Name: l.Name, Message: l.Message})
	}
	return page, true, nil
}

// RunsNamed returns the ids of the runs with a name.
func (c *Client) RunsNamed(ctx context.Context, name string) ([]string, error) {
	resp, err := RunsNamed(ctx, c.gql, name)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range resp.Flow_run {
		ids = append(ids, r.Id)
	}
	return ids, nil
}
