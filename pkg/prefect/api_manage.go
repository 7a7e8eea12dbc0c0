package prefect

import (
	"context"
	"time"
)

// EndedRunsSince returns, in one request and with their current versions,
// the runs that are Cancelling or in a final state (Success, Failed,
// Cancelled...) and whose row changed at or after since, by the database's
// clock: every run that became so since then, and a few that only got a
// heartbeat or a label since.
func (c *Client) EndedRunsSince(ctx context.Context, since time.Time) ([]RunState, error) {
	resp, err := EndedRunsSince(ctx, c.gql, endedTypes(), since.UTC())
	if err != nil {
		return nil, err
	}
	out := make([]RunState, 0, len(resp.Flow_run))
	for _, r := range resp.Flow_run {
		out = append(out, RunState{ID: r.Id, Version: r.Version, State: r.State})
	}
	return out, nil
}
