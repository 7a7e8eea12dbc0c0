package jobs

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Kinds of drift between Prefect and the cluster the agent meets and counts
// in /metrics (prefect_agent_drift_total).
const (
	// DriftRunFinished: the run finished in Prefect (set Failed, Success or
	// Cancelled by someone else) while its pod still ran; the Job is deleted
	// after FinishedRunGrace.
	DriftRunFinished = "run-finished-pod-running"
	// DriftOtherSubmission: a Job reported on a run whose current submission
	// is another one; the report is only a WARNING (the report path counts it
	// with Metrics.CountDrift).
	DriftOtherSubmission = "report-for-other-submission"
)

// Defaults of the finished-run check.
const (
	DefaultFinishedRunGrace   = 2 * time.Minute
	DefaultDriftCheckInterval = 15 * time.Second
	// driftPage is how many run ids go into one FlowRunStates request.
	driftPage = 500
)

// podStillRuns tells whether a Job has a pod that runs or may still start.
func podStillRuns(pods []*corev1.Pod) bool {
	for _, p := range pods {
		if p.DeletionTimestamp == nil && (p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending) {
			return true
		}
	}
	return false
}

// checkFinishedRuns asks Prefect, a page of runs per request, for the states
// of the runs whose Jobs still have a pod that runs. A run seen finished for
// FinishedRunGrace while its pod still runs (someone set it Failed, Success
// or Cancelled by hand, or the flow's process hangs after reporting) has its
// Job deleted, with a line on the run, an Event on the Job and a count.
func (c *Controller) checkFinishedRuns(ctx context.Context) {
	log := klog.FromContext(ctx)
	now := c.now()
	jobsByRun := map[string][]*batchv1.Job{}
	var ids []string
	for _, obj := range c.jobs.GetIndexer().List() {
		cached, ok := obj.(*cachedJob)
		runID := ""
		if ok {
			runID = cached.Labels[manifest.LabelFlowRunID]
		}
		if runID == "" || cached.DeletionTimestamp != nil || cached.finished() {
			continue
		}
		job := cached.job()
		if !podStillRuns(c.facts(job).pods) {
			continue
		}
		if _, seen := jobsByRun[runID]; !seen {
			ids = append(ids, runID)
		}
		jobsByRun[runID] = append(jobsByRun[runID], job)
	}
	finished := map[string]prefect.RunState{}
	for start := 0; start < len(ids); start += driftPage {
		page := ids[start:min(start+driftPage, len(ids))]
		states, err := c.prefect.FlowRunStates(ctx, page)
		if err != nil {
			log.Error(err, "Asking Prefect for the states of the runs whose pods still run")
			return
		}
		for id, st := range states {
			if prefect.Finished(st.State) {
				finished[id] = st
			}
		}
	}
	for id := range c.finishedSince {
		if _, still := finished[id]; !still {
			delete(c.finishedSince, id)
		}
	}
	for id, st := range finished {
		since, seen := c.finishedSince[id]
		if !seen {
			c.finishedSince[id] = now
			continue
		}
		if now.Sub(since) < c.cfg.FinishedRunGrace {
			continue
		}
		for _, job := range jobsByRun[id] {
			deleted, err := c.removeJob(ctx, job, DriftRunFinished)
			if err != nil {
				log.Error(err, "Deleting the Job of a finished flow run; will try again", "job", klog.KObj(job), "flowRun", id)
				continue
			}
			if !deleted {
				continue
			}
			c.metrics.CountDrift(DriftRunFinished)
			msg := fmt.Sprintf("Deleted Job %s: the flow run is %s in Prefect but its pod still ran %s later", job.Name, st.State, c.cfg.FinishedRunGrace)
			log.Info("Deleted the Job of a flow run that finished in Prefect while its pod still ran", "job", klog.KObj(job), "flowRun", id, "state", st.State)
			c.events.On(job, corev1.EventTypeWarning, EventDrift, msg)
			c.runs.BestEffort(ctx, id, prefect.LevelWarning, msg)
		}
		delete(c.finishedSince, id)
	}
}
