package agent

import (
	"context"
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// queueCallEvery is how often an agent on Prefect Server still calls
// get_runs_in_queue although it finds its runs with its own query: Server
// records the call as the agent's last_queried, which the UI shows as the
// agent's health.
const queueCallEvery = 30 * time.Second

// retryBuffer is how long past its start time a task-run retry waits before
// the agent relaunches its flow run: the previous flow runner may still be
// about to take it up in its pod.
const retryBuffer = 3 * time.Second

// dueRuns returns the ids of the runs to consider at this poll, oldest first.
//
// On Server the agent finds them with its own query (DueFlowRuns: the label
// rule applied by the database, oldest first, leaving out the runs it already
// holds), because get_runs_in_queue takes the 75 oldest due runs of every
// label before it applies the label rule: runs of labels no agent serves
// would hide this agent's runs for good. get_runs_in_queue is still called
// every queueCallEvery, for the agent's last_queried, and its ids are added.
// Cloud keeps get_runs_in_queue at every poll, as 1.4.1.
func (a *Agent) dueRuns(ctx context.Context, now time.Time) ([]string, error) {
	before := now.Add(10 * time.Second)
	if a.cfg.Backend == "cloud" {
		return a.cfg.Prefect.RunsInQueue(ctx, a.tenantID, a.cfg.Labels, before)
	}
	var skip []string
	a.inFlight.Range(func(k, _ any) bool {
		skip = append(skip, k.(string))
		return true
	})
	for id := range a.dropped {
		skip = append(skip, id)
	}
	a.templateRetries.Range(func(k, v any) bool {
		switch id := k.(string); {
		case a.templateBackingOff(id, now):
			skip = append(skip, id)
		case now.Sub(v.(templateRetry).until) > time.Hour:
			a.templateRetries.Delete(id) // taken by another agent, cancelled...
		}
		return true
	})
	ids, err := a.cfg.Prefect.DueRuns(ctx, prefect.DueRunsQuery{
		TenantID: a.tenantID, Labels: a.cfg.Labels, Before: before, RetryBefore: now.Add(-retryBuffer),
		Skip: skip, Limit: queuePage,
	})
	if err != nil {
		return nil, err
	}
	if now.Sub(a.lastQueueCall) >= queueCallEvery {
		queued, err := a.cfg.Prefect.RunsInQueue(ctx, a.tenantID, a.cfg.Labels, before)
		if err != nil {
			klog.FromContext(ctx).V(1).Info("get_runs_in_queue failed; the agent's own query found the runs", "err", err.Error())
		} else {
			a.lastQueueCall = now
			for _, id := range queued {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids, nil
}

// inQueueOrder sorts runs in the order of ids, the queue's (oldest first):
// the metadata query returns them in no particular order.
func inQueueOrder(runs []prefect.FlowRun, ids []string) {
	pos := make(map[string]int, len(ids))
	for i, id := range ids {
		pos[id] = i
	}
	slices.SortStableFunc(runs, func(x, y prefect.FlowRun) int { return pos[x.Id] - pos[y.Id] })
}
