package prefect

import (
	"context"
	"encoding/json"
	"time"
)

// StrandedQuery is what recovery asks for: the runs an agent marked
// Submitted inside a window that are still Submitted and have no
// "Submitted for execution: Job ..." line written since the window began
// (less strandedLineMargin).
type StrandedQuery struct {
	AgentID string
	// SubmittedAfter and SubmittedBefore bound the time of the mark.
	SubmittedAfter, SubmittedBefore time.Time
	// PageSize bounds each request; DefaultStrandedPage when zero.
	PageSize int
}

// DefaultStrandedPage is the number of candidates one request asks for.
const DefaultStrandedPage = 100

// strandedLineMargin is how much older than the window a Job line may be and
// still leave a run out: the agent's clock stamps its lines, Server's clock
// the marks. A line left out by a larger skew only makes its run a
// candidate, which recovery's own checks then dismiss.
const strandedLineMargin = time.Minute

// StrandedCandidate is one run recovery looks closer at.
type StrandedCandidate struct {
	ID string
	// Marked is the time of the Submitted mark (state_timestamp).
	Marked time.Time
	// SerializedState is the mark, holding the submission (SubmittedBy).
	SerializedState json.RawMessage
}

// firstUUID sorts before every other uuid: the key set's start.
const firstUUID = "00000000-0000-0000-0000-000000000000"

// EachStrandedCandidate hands every candidate to fn, oldest mark first, one
// page of q.PageSize at a time until a short page; fn returning false stops
// it. It returns the number of requests made.
func (c *Client) EachStrandedCandidate(ctx context.Context, q StrandedQuery, fn func(StrandedCandidate) bool) (pages int, err error) {
	size := q.PageSize
	if size <= 0 {
		size = DefaultStrandedPage
	}
	after, afterID := q.SubmittedAfter.UTC(), firstUUID
	for {
		resp, err := StrandedFlowRunCandidates(ctx, c.gql, q.AgentID, q.SubmittedAfter.UTC(), q.SubmittedBefore.UTC(), after, afterID,
			q.SubmittedAfter.Add(-strandedLineMargin).UTC(), size)
		pages++
		if err != nil {
			return pages, err
		}
		for _, r := range resp.Flow_run {
			if !fn(StrandedCandidate{ID: r.Id, Marked: r.State_timestamp, SerializedState: r.Serialized_state}) {
				return pages, nil
			}
		}
		if len(resp.Flow_run) < size {
			return pages, nil
		}
		last := resp.Flow_run[len(resp.Flow_run)-1]
		after, afterID = last.State_timestamp, last.Id
	}
}

// StrandedRun is a run recovery makes a Job for, with the run log lines that
// named its Jobs.
type StrandedRun struct {
	FlowRun
	// JobLines are the run's "Submitted for execution: Job ..." log lines.
	JobLines []string
}

// ReadStrandedRun reads what a stranded run's Job is built from; ok is false
// when the run does not exist (any more).
func (c *Client) ReadStrandedRun(ctx context.Context, id string, retryBuffer time.Time) (run StrandedRun, ok bool, err error) {
	resp, err := StrandedFlowRun(ctx, c.gql, id, retryBuffer.UTC())
	if err != nil || resp.Flow_run_by_pk == nil {
		return StrandedRun{}, false, err
	}
	r := resp.Flow_run_by_pk
	run.FlowRun = r.SubmittableRun
	for _, l := range r.Logs {
		run.JobLines = append(run.JobLines, l.Message)
	}
	return run, true, nil
}
