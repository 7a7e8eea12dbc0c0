package jobs

import (
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Run time limits: a Job's activeDeadlineSeconds (the agent's --max-run-time,
// or the template's own). When Kubernetes stops a Job for it, the Job gets a
// FailureTarget and then a Failed condition with reason DeadlineExceeded and
// its pods are deleted; the run gets one ERROR line naming the limit and is
// set Failed, and the pods' deletion is not reported as a disruption.

// reasonDeadlineExceeded is the Job controller's reason for a Job stopped at
// its activeDeadlineSeconds.
const reasonDeadlineExceeded = "DeadlineExceeded"

// inspectDeadline handles a Job that reached its run time limit, and says
// whether it did: then the inspection is the whole story.
func inspectDeadline(job *batchv1.Job, f jobFacts, now time.Time) (inspection, bool) {
	var in inspection
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return in, false
		}
	}
	limit := job.Annotations[manifest.AnnotationRunTimeLimit]
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobFailed || c.Type == batchv1.JobFailureTarget) && c.Status == corev1.ConditionTrue && c.Reason == reasonDeadlineExceeded {
			if limit == "" {
				limit = "its activeDeadlineSeconds"
			}
			in.problems = append(in.problems, problem{
				key: "job/deadline", reason: reasonDeadlineExceeded, level: prefect.LevelError, unlessFinished: true,
				message: fmt.Sprintf("Job %s ran longer than its run time limit, %s: Kubernetes stopped it (DeadlineExceeded) and the flow run is failed", job.Name, limit),
			})
			in.flowStarted = len(f.pods) > 0
			return in, true
		}
	}
	// The Job controller may delete the pods before the Job's condition
	// reaches the cache: past the limit, a pod being deleted is the deadline
	// at work, not a disruption; the Job's update brings the report.
	d, ok := manifest.RunTimeLimit(limit)
	if !ok || now.Sub(job.CreationTimestamp.Time) < d {
		return in, false
	}
	for _, pod := range f.pods {
		if pod.DeletionTimestamp != nil {
			return in, true
		}
	}
	return in, false
}
