package prefect

import (
	"context"
	"time"
)

// EndedRunsSince returns the runs that became Cancelling or reached a final
// state (Success, Failed, Cancelled...) at or after since, in one request,
// with their current versions.
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
