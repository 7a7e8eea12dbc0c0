package prefect

import (
	"context"
	"encoding/json"
	"time"
)

// CancelledRunsSince returns the runs that became Cancelling or Cancelled at
// or after since, in one request, with their current versions.
func (c *Client) CancelledRunsSince(ctx context.Context, since time.Time) ([]RunState, error) {
	resp, err := CancelledRunsSince(ctx, c.gql, since.UTC())
	if err != nil {
		return nil, err
	}
	out := make([]RunState, 0, len(resp.Flow_run))
	for _, r := range resp.Flow_run {
		out = append(out, RunState{ID: r.Id, Version: r.Version, State: r.State})
	}
	return out, nil
}

// CancelledState is a Cancelled state with a message.
func CancelledState(message string) json.RawMessage {
	raw, _ := json.Marshal(baseState("Cancelled", message))
	return raw
}

// ScheduledState is a Scheduled state starting at start, as Prefect's
// Lazarus writes when it gives a run a fresh attempt.
func ScheduledState(message string, start time.Time) json.RawMessage {
	s := baseState("Scheduled", message)
	s["start_time"] = start.UTC().Format(time.RFC3339Nano)
	raw, _ := json.Marshal(s)
	return raw
}
