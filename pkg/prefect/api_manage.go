package prefect

import (
	"context"
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
