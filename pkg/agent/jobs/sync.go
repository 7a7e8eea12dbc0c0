package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// AnnotationReported lists, on a Job, the problems already reported to its
// flow run, so a restarted agent or a second one does not report them again.
const AnnotationReported = "prefect.io/reported"

// AnnotationWaitingReason and AnnotationWaitingSince record, on a Job whose
// flow has not started, why it waits (quota, unschedulable, ...) and since
// when (RFC 3339); `kubectl prefect jobs` shows them.
const (
	AnnotationWaitingReason = "prefect.io/waiting-reason"
	AnnotationWaitingSince  = "prefect.io/waiting-since"
)

// Keys of what the agent did to a Job, recorded with its reported problems.
const (
	keyCompleted = "job/completed"
	keyCancelled = "job/cancelled"
)

// sync looks at one Job and reports, cleans up or waits as needed. It
// returns an error, and the Job is requeued rate-limited, while a report has
// not been accepted by Prefect; a Job is never deleted before that.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	job, err := c.getJob(ns, name)
	if apierrors.IsNotFound(err) {
		c.reported.forgetKey(key)
		c.takeGone(key)
		c.waits.forget(key)
		c.held.set(key, "", false)
		return nil
	}
	if err != nil {
		return err
	}
	runID := job.Labels[manifest.LabelFlowRunID]
	if runID == "" || job.DeletionTimestamp != nil {
		c.waits.forget(key)
		c.held.set(key, "", false)
		return nil
	}
	if newer := c.newerSubmission(job, runID); newer != "" {
		// The run was submitted again and the submission could not delete
		// this Job: it must neither run nor report on the new submission.
		deleted, err := c.removeJob(ctx, job, "superseded")
		if err != nil || !deleted {
			return err
		}
		msg := fmt.Sprintf("Deleted Job %s of an earlier submission, which had not finished: the run was submitted again and only Job %s may run it", job.Name, newer)
		c.events.On(job, corev1.EventTypeNormal, EventSuperseded, msg)
		c.runs.BestEffort(ctx, runID, prefect.LevelInfo, msg)
		return nil
	}
	facts := c.facts(job)
	for _, gone := range c.peekGone(key) {
		// Seen as deleted: inspect it like a pod marked for deletion.
		gone = gone.DeepCopy()
		if gone.DeletionTimestamp == nil {
			now := metav1.NewTime(c.now())
			gone.DeletionTimestamp = &now
		}
		facts.pods = append(facts.pods, gone)
	}
	facts.firstPod = c.reported.firstPod(job, facts.pods)
	done := c.reported.of(job)
	for k := range done {
		facts.disrupted = facts.disrupted || strings.HasSuffix(k, "/disrupted")
	}
	in := inspect(job, facts, c.now(), c.policy)

	var fresh []problem
	for _, p := range in.problems {
		if !done[p.key] {
			fresh = append(fresh, p)
		}
	}
	if in.complete && !done[keyCompleted] {
		fresh = append(fresh, problem{key: keyCompleted, level: prefect.LevelWarning, unlessFinished: true, reason: "Completed",
			message: fmt.Sprintf("Job %s completed but the flow run never reported a final state: the flow's process exited without reporting", job.Name)})
	}
	if len(fresh) > 0 {
		if err := c.report(ctx, job, runID, fresh); err != nil {
			return fmt.Errorf("reporting to flow run %s: %w", runID, err)
		}
	}
	c.takeGone(key)
	c.waits.set(key, in.waiting)
	c.held.set(key, runID, holds(job, in) && !giveUpIn(in))
	recordErr := c.record(ctx, job, in.waiting)

	failedRun, giveUp := false, false
	for _, p := range in.problems {
		failedRun = failedRun || p.level == prefect.LevelError
		giveUp = giveUp || p.giveUp
	}
	if in.recheck > 0 {
		c.queue.AddAfter(key, in.recheck)
	}
	switch {
	case giveUp:
		// The flow never started; its pod must not start after the run failed.
		return errors.Join(recordErr, c.deleteJob(ctx, job, "gave-up"))
	case in.complete && c.cfg.DeleteFinishedJobs:
		return errors.Join(recordErr, c.deleteJob(ctx, job, "completed"))
	case (failedRun || manifest.JobFinished(job)) && c.cfg.DeleteFinishedJobs && !c.cfg.KeepFailedJobs:
		// A failed flow (as in 1.4.1, one failed pod finishes the Job) or a failed Job.
		return errors.Join(recordErr, c.deleteJob(ctx, job, "failed"))
	}
	return recordErr
}
