package jobs

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// deleteJob removes a Job and, in the background, its pods.
func (c *Controller) deleteJob(ctx context.Context, job *batchv1.Job, why string) error {
	_, err := c.removeJob(ctx, job, why)
	return err
}

// removeJob is deleteJob that also says whether this call deleted the Job
// (false when it was gone or replaced already).
func (c *Controller) removeJob(ctx context.Context, job *batchv1.Job, why string) (bool, error) {
	policy := metav1.DeletePropagationBackground
	err := c.kube.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &job.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("deleting Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	c.metrics.JobDeleted(why)
	c.events.On(job, corev1.EventTypeNormal, EventDeleted, "Deleted by the agent: "+deletedBecause(why))
	klog.FromContext(ctx).V(1).Info("Deleted Job", "job", klog.KObj(job), "why", why)
	return true, nil
}
