package jobs

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// endedOverlap is how far each check for ended runs reaches back before the
// previous one, to cover clock skew between the agent and whoever set the
// state (state_timestamp is the setter's clock).
const endedOverlap = time.Minute

// checkEndedRuns is the controller's one periodic question to Prefect about
// its Jobs' runs: which became Cancelling or reached a final state since the
// last check. A controller's first check reads the states of its active
// Jobs' runs instead (a page of ids a request, once), so that what happened
// before it started counts too. Cancelling and Cancelled runs are acted on at
// once (cancel.go); a finished run whose pod still runs loses its Job after
// FinishedRunGrace (drift.go). At steady state that is one request per
// CancelCheckInterval, whatever the number of Jobs.
func (c *Controller) checkEndedRuns(ctx context.Context) {
	log := klog.FromContext(ctx)
	now := c.now()
	active := c.activeJobsByRun()
	if len(active) == 0 {
		// A Job created from now on can only end from now on.
		c.endedSince = now.Add(-endedOverlap)
		clear(c.finishedSince)
		return
	}
	var runs []prefect.RunState
	var err error
	if c.endedSince.IsZero() {
		runs, err = c.endedAmong(ctx, active)
	} else {
		runs, err = c.prefect.EndedRunsSince(ctx, c.endedSince)
	}
	if err != nil {
		log.Error(err, "Asking Prefect for the flow runs that were cancelled or finished")
		return
	}
	handled := true
	for _, run := range runs {
		cached := active[run.ID]
		if len(cached) == 0 {
			continue
		}
		if run.State == "Cancelling" || run.State == "Cancelled" {
			for _, j := range cached {
				job := j.job()
				if err := c.cancel(ctx, job, run); err != nil {
					log.Error(err, "Cancelling a flow run's Job; will try again", "job", klog.KObj(job), "flowRun", run.ID)
					handled = false
				}
			}
		}
		if _, seen := c.finishedSince[run.ID]; prefect.Finished(run.State) && !seen {
			c.finishedSince[run.ID] = now
		}
	}
	c.deleteDrifted(ctx, active, now)
	if handled {
		c.endedSince = now.Add(-endedOverlap)
	}
}

// activeJobsByRun groups the cached Jobs that have not finished and are not
// being deleted by their flow run.
func (c *Controller) activeJobsByRun() map[string][]*cachedJob {
	active := map[string][]*cachedJob{}
	for _, obj := range c.jobs.GetIndexer().List() {
		cached, ok := obj.(*cachedJob)
		if !ok || cached.DeletionTimestamp != nil || cached.finished() {
			continue
		}
		if runID := cached.Labels[manifest.LabelFlowRunID]; runID != "" {
			active[runID] = append(active[runID], cached)
		}
	}
	return active
}

// endedAmong reads the current states of the active Jobs' runs, a page of
// ids a request, and returns those that are Cancelling or finished.
func (c *Controller) endedAmong(ctx context.Context, active map[string][]*cachedJob) ([]prefect.RunState, error) {
	ids := make([]string, 0, len(active))
	for id := range active {
		ids = append(ids, id)
	}
	states, err := c.statesOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	var ended []prefect.RunState
	for _, st := range states {
		if st.State == "Cancelling" || prefect.Finished(st.State) {
			ended = append(ended, st)
		}
	}
	return ended, nil
}

// statesOf reads the current states of runs, statesPage ids a request.
func (c *Controller) statesOf(ctx context.Context, ids []string) (map[string]prefect.RunState, error) {
	all := map[string]prefect.RunState{}
	for start := 0; start < len(ids); start += statesPage {
		states, err := c.prefect.FlowRunStates(ctx, ids[start:min(start+statesPage, len(ids))])
		if err != nil {
			return nil, err
		}
		for id, st := range states {
			all[id] = st
		}
	}
	return all, nil
}
