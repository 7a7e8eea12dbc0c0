package jobs

import (
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// jobStatus is the STATUS column: Complete, Failed (reason), Suspended,
// Pending (the pod's waiting reason or Unschedulable), or Running. A Job the
// agent records as waiting on purpose shows waitingStatus instead.
func jobStatus(job *batchv1.Job, pods []*corev1.Pod) string {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return "Complete"
		case batchv1.JobFailed:
			if c.Reason != "" {
				return fmt.Sprintf("Failed (%s)", c.Reason)
			}
			return "Failed"
		case batchv1.JobSuspended:
			return "Suspended"
		}
	}
	for _, p := range pods {
		if reason := podPendingReason(p); reason != "" {
			return fmt.Sprintf("Pending (%s)", reason)
		}
	}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning {
			return "Running"
		}
	}
	if job.Status.Ready != nil && *job.Status.Ready > 0 {
		return "Running"
	}
	if job.Status.Active > 0 || len(pods) > 0 {
		return "Pending"
	}
	return "Pending (no pod)"
}

// podPendingReason says why a pending pod waits, or "" if it does not.
func podPendingReason(p *corev1.Pod) string {
	if p.Status.Phase != corev1.PodPending {
		return ""
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" && w.Reason != "ContainerCreating" {
			return w.Reason
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason != "" {
			return c.Reason
		}
	}
	return ""
}

// completions is "succeeded/wanted", as kubectl shows it.
func completions(job *batchv1.Job) string {
	want := int32(1)
	if job.Spec.Completions != nil {
		want = *job.Spec.Completions
	}
	return fmt.Sprintf("%d/%d", job.Status.Succeeded, want)
}

// jobDuration is how long the Job has run, or ran.
func jobDuration(job *batchv1.Job, now time.Time) string {
	if job.Status.StartTime == nil {
		return ""
	}
	end := now
	if job.Status.CompletionTime != nil {
		end = job.Status.CompletionTime.Time
	}
	return duration.HumanDuration(end.Sub(job.Status.StartTime.Time))
}

func age(created time.Time, now time.Time) string {
	return duration.HumanDuration(now.Sub(created))
}
