package jobs

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// endedOverlap is how far each check for ended runs reaches back before the
// previous one, to cover clock skew between the agent and Prefect's database
// (the query's bound, flow_run.updated, is the database's clock). A skew
// larger than this can hide a run that ended from the check.
const endedOverlap = time.Minute

// sighting is when a finished run was first seen with a pod still running,
// and its version then: a later state change (a restart, a new submission)
// moves the version on and ends the sighting.
type sighting struct {
	at      time.Time
	version int
}

// checkEndedRuns is the controller's one periodic question to Prefect about
// its Jobs' runs: which are Cancelling or finished and changed since the last
// check. A controller's first check reads the states of its active Jobs'
// runs instead (a page of ids a request), so that what happened before it
// started counts too. Cancelling and Cancelled runs are acted on at once
// (cancel.go), and a cancellation that fails is tried again at the next
// check from cancelRetry; a finished run whose pod still runs loses its Job
// after FinishedRunGrace (drift.go). The window moves on after every answer,
// so at steady state this is one request per EndedCheckInterval, whatever
// the number of Jobs.
func (c *Controller) checkEndedRuns(ctx context.Context) {
	log := klog.FromContext(ctx)
	now := c.now()
	active := c.activeJobsByRun()
	if len(active) == 0 {
		// A Job created from now on can only end from now on.
		c.endedSince = now.Add(-endedOverlap)
		clear(c.finishedSince)
		clear(c.cancelRetry)
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
	c.endedSince = now.Add(-endedOverlap)
	runs = append(runs, c.cancellationsToRetry(ctx, active, runs)...)
	for _, run := range runs {
		cached := active[run.ID]
		if len(cached) == 0 {
			continue
		}
		if cancelled(run.State) {
			delete(c.cancelRetry, run.ID)
			for _, j := range cached {
				job := j.job()
				if err := c.cancel(ctx, job, run); err != nil {
					log.Error(err, "Cancelling a flow run's Job; will try again", "job", klog.KObj(job), "flowRun", run.ID)
					c.cancelRetry[run.ID] = true
				}
			}
		}
		// A run seen finished again at another version (restarted and
		// finished since) starts its grace again.
		if seen, ok := c.finishedSince[run.ID]; prefect.Finished(run.State) && (!ok || seen.version != run.Version) {
			c.finishedSince[run.ID] = sighting{at: now, version: run.Version}
		}
	}
	c.deleteDrifted(ctx, active, now)
}

// cancellationsToRetry reads again, in one request, the runs whose
// cancellation failed at an earlier check and that the answer in hand does
// not hold, and returns those still Cancelling or Cancelled; the others
// leave cancelRetry.
func (c *Controller) cancellationsToRetry(ctx context.Context, active map[string][]*cachedJob, answered []prefect.RunState) []prefect.RunState {
	if len(c.cancelRetry) == 0 {
		return nil
	}
	inAnswer := map[string]bool{}
	for _, r := range answered {
		inAnswer[r.ID] = true
	}
	var ids []string
	for id := range c.cancelRetry {
		switch {
		case len(active[id]) == 0:
			delete(c.cancelRetry, id)
		case !inAnswer[id]:
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	states, err := c.statesOf(ctx, ids)
	if err != nil {
		klog.FromContext(ctx).Error(err, "Reading the flow runs whose cancellation failed; will try again")
		return nil
	}
	var again []prefect.RunState
	for _, id := range ids {
		if st, ok := states[id]; ok && cancelled(st.State) {
			again = append(again, st)
			continue
		}
		delete(c.cancelRetry, id)
	}
	return again
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

// cancelled tells whether a run's state asks its Job to stop: Cancelling or
// Cancelled.
func cancelled(state string) bool {
	return state == "Cancelling" || state == "Cancelled"
}
