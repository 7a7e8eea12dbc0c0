package jobs

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

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
