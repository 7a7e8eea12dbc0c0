package prefect

import (
	"context"
	"encoding/json"
	"time"
)

// DueRunsQuery is what the agent's own search for due runs asks for.
type DueRunsQuery struct {
	TenantID string
	// Labels are the agent's labels: a run's labels must all be among them,
	// and a run without labels fits only an agent without labels.
	Labels []string
	// Before bounds the start time of Scheduled runs, RetryBefore that of
	// the due task runs of Running runs.
	Before, RetryBefore time.Time
	// Skip are runs to leave out (those the agent already holds).
	Skip []string
	// Limit is the page size.
	Limit int
}

// DueRuns returns the ids of the runs the agent may take, oldest start time
// first (Running runs with due task runs, whose start time is NULL, last).
func (c *Client) DueRuns(ctx context.Context, q DueRunsQuery) ([]string, error) {
	labels, err := json.Marshal(nonNil(q.Labels))
	if err != nil {
		return nil, err
	}
	resp, err := DueFlowRuns(ctx, c.gql, q.TenantID, labels, q.Before.UTC(), q.RetryBefore.UTC(), nonNil(q.Skip), q.Limit)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(resp.Flow_run))
	for _, r := range resp.Flow_run {
		ids = append(ids, r.Id)
	}
	return ids, nil
}
