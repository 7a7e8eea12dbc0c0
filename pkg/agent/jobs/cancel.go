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

// cancelOverlap is how far each cancellation check reaches back before the
// previous one, to cover clock skew between the agent and whoever set the
// state (state_timestamp is the setter's time).
const cancelOverlap = time.Minute

// checkCancellations asks Prefect, in one request, for the runs that became
// Cancelling or Cancelled since the last check, and acts on those that have
// a Job here. A Cancelled run's Job is deleted. A Cancelling run whose flow
// never started (no pod, or a pod still pending) has its Job deleted and is
// set Cancelled; a running flow cancels itself, as Prefect 1's flow runner
// does, and is left alone.
func (c *Controller) checkCancellations(ctx context.Context) {
	log := klog.FromContext(ctx)
	now := c.now()
	oldest, active := time.Time{}, false
	for _, obj := range c.jobs.GetIndexer().List() {
		cached, ok := obj.(*cachedJob)
		if !ok || cached.Labels[manifest.LabelFlowRunID] == "" || cached.DeletionTimestamp != nil || cached.finished() {
			continue
		}
		if !active || cached.CreationTimestamp.Time.Before(oldest) {
			oldest = cached.CreationTimestamp.Time
		}
		active = true
	}
	if !active {
		// A Job created from now on can only be cancelled from now on.
		c.cancelSince = now.Add(-cancelOverlap)
		return
	}
	since := c.cancelSince
	if since.IsZero() {
		// First check: whatever happened since the oldest Job was created.
		since = oldest.Add(-cancelOverlap)
	}
	runs, err := c.prefect.CancelledRunsSince(ctx, since)
	if err != nil {
		log.Error(err, "Asking Prefect for cancelled flow runs")
		return
	}
	handled := true
	for _, run := range runs {
		objs, _ := c.jobs.GetIndexer().ByIndex(byFlowRun, run.ID)
		for _, obj := range objs {
			cached, ok := obj.(*cachedJob)
			if !ok || cached.DeletionTimestamp != nil || cached.finished() {
				continue
			}
			job := cached.job()
			if err := c.cancel(ctx, job, run); err != nil {
				log.Error(err, "Cancelling a flow run's Job; will try again", "job", klog.KObj(job), "flowRun", run.ID)
				handled = false
			}
		}
	}
	if handled {
		c.cancelSince = now.Add(-cancelOverlap)
	}
}

// cancel acts on one Job of a run in Cancelling or Cancelled.
func (c *Controller) cancel(ctx context.Context, job *batchv1.Job, run prefect.RunState) error {
	if c.reported.of(job)[keyCancelled] {
		return nil
	}
	msg := fmt.Sprintf("Deleted Job %s: the flow run is Cancelled", job.Name)
	if run.State == "Cancelling" {
		if inspect(job, c.facts(job), c.now(), c.policy).flowStarted {
			klog.FromContext(ctx).V(1).Info("Leaving a cancelling flow run to its flow runner", "job", klog.KObj(job), "flowRun", run.ID)
			return nil
		}
		msg = fmt.Sprintf("Deleted Job %s before its flow started and set the flow run Cancelled", job.Name)
		// Cancelled first: a pod that starts meanwhile finds the run Cancelled and exits.
		if _, err := c.setState(ctx, run.ID, run, prefect.CancelledState("Flow run cancelled before its flow started: the agent deleted its Job")); err != nil {
			return err
		}
	}
	if !c.reported.logged(job, keyCancelled) {
		c.events.On(job, corev1.EventTypeNormal, EventCancelled, msg)
		if err := c.runs.MustLand(ctx, run.ID, prefect.LevelInfo, msg); err != nil {
			return err
		}
		c.reported.markLogged(job, keyCancelled)
	}
	if err := c.deleteJob(ctx, job, "cancelled"); err != nil {
		return err
	}
	c.reported.add(job, []problem{{key: keyCancelled}})
	return nil
}
