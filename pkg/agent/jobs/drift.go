package jobs

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

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

// DefaultFinishedRunGrace is how long a run may be finished in Prefect
// while its pod still runs before its Job is deleted.
const DefaultFinishedRunGrace = 2 * time.Minute

// statesPage is how many run ids go into one FlowRunStates request.
const statesPage = 500

// podStillRuns tells whether a Job has a pod that runs or may still start.
func podStillRuns(pods []*corev1.Pod) bool {
	for _, p := range pods {
		if p.DeletionTimestamp == nil && (p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending) {
			return true
		}
	}
	return false
}

// deleteDrifted deletes the Jobs of runs seen finished in Prefect (someone
// set them Failed, Success or Cancelled by hand, or the flow's process hangs
// after reporting) FinishedRunGrace ago while a pod of theirs still runs,
// with a line on the run, an Event on the Job and a count. The states of
// those runs are read once more first, in one request for all of them: a run
// whose state changed since it was seen (restarted from the UI, submitted
// again) has moved to another version and keeps its Jobs.
func (c *Controller) deleteDrifted(ctx context.Context, active map[string][]*cachedJob, now time.Time) {
	log := klog.FromContext(ctx)
	running := map[string][]*batchv1.Job{}
	var due []string
	for id, seen := range c.finishedSince {
		if len(active[id]) == 0 {
			delete(c.finishedSince, id)
			continue
		}
		if now.Sub(seen.at) < c.cfg.FinishedRunGrace {
			continue
		}
		for _, cached := range active[id] {
			if job := cached.job(); podStillRuns(c.facts(job).pods) {
				running[id] = append(running[id], job)
			}
		}
		if len(running[id]) > 0 {
			due = append(due, id)
		}
	}
	if len(due) == 0 {
		return
	}
	states, err := c.statesOf(ctx, due)
	if err != nil {
		log.Error(err, "Reading the states of finished flow runs whose pods still run; will try again")
		return
	}
	for _, id := range due {
		st, ok := states[id]
		if !ok || st.Version != c.finishedSince[id].version || !prefect.Finished(st.State) {
			delete(c.finishedSince, id)
			continue
		}
		left := false
		for _, job := range running[id] {
			deleted, err := c.removeJob(ctx, job, DriftRunFinished)
			if err != nil {
				log.Error(err, "Deleting the Job of a finished flow run; will try again", "job", klog.KObj(job), "flowRun", id)
				left = true
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
		if !left {
			delete(c.finishedSince, id)
		}
	}
}
