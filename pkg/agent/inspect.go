package agent

import (
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// problem is something wrong with a flow run's Job, reported once.
type problem struct {
	// key identifies the problem on this Job, e.g. "pod/NAME/image-pull".
	key string
	// reason is a short Kubernetes reason for metrics, e.g. ImagePullBackOff.
	reason string
	// message is the line written to the flow run.
	message string
	// level is the run log level; an ERROR also fails the run.
	level string
	// unlessFinished skips the report when the flow already reported a final
	// state (a container that exits after the flow failed itself).
	unlessFinished bool
}

// inspection is what a look at a Job, its pods and events found.
type inspection struct {
	problems []problem
	// recheck is when a pending problem (unschedulable within its grace) is due.
	recheck time.Duration
	// complete says the Job succeeded; a failed one is among the problems.
	complete bool
}

var imagePullReasons = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true}

// inspect looks at a Job, its pods and its FailedCreate events. firstPod
// names the Job's first pod; any other pod is a replacement.
func inspect(job *batchv1.Job, pods []*corev1.Pod, events []*corev1.Event, firstPod string, now time.Time, unschedulableGrace time.Duration) inspection {
	var in inspection
	for _, pod := range pods {
		in.inspectPod(job, pod, pod.Name != firstPod, now, unschedulableGrace)
	}
	for _, ev := range events {
		if ev.Reason != "FailedCreate" {
			continue
		}
		in.problems = append(in.problems, problem{
			key: "job/failed-create", reason: "FailedCreate", level: "ERROR",
			message: fmt.Sprintf("Kubernetes cannot create a pod for Job %s (FailedCreate): %s", job.Name, ev.Message),
		})
		break
	}
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			in.complete = true
		case batchv1.JobFailed:
			in.problems = append(in.problems, problem{
				key: "job/failed", reason: c.Reason, level: "ERROR", unlessFinished: true,
				message: fmt.Sprintf("Job %s failed (%s): %s", job.Name, c.Reason, c.Message),
			})
		}
	}
	return in
}

func (in *inspection) inspectPod(job *batchv1.Job, pod *corev1.Pod, replacement bool, now time.Time, grace time.Duration) {
	prefix := "pod/" + pod.Name + "/"
	if replacement {
		in.problems = append(in.problems, problem{
			key: prefix + "replacement", reason: "PodReplaced", level: "WARNING",
			message: fmt.Sprintf("Job %s started another pod, %s, which runs the flow again", job.Name, pod.Name),
		})
	}
	if pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed && job.DeletionTimestamp == nil {
		in.problems = append(in.problems, problem{
			key: prefix + "deleted", reason: "PodDeleted", level: "ERROR", unlessFinished: true,
			message: fmt.Sprintf("Pod %s of Job %s was deleted while the flow was running", pod.Name, job.Name),
		})
	}
	if pod.Status.Reason == "Evicted" {
		in.problems = append(in.problems, problem{
			key: prefix + "evicted", reason: "Evicted", level: "ERROR", unlessFinished: true,
			message: fmt.Sprintf("Pod %s of Job %s was evicted: %s", pod.Name, job.Name, pod.Status.Message),
		})
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if w := cs.State.Waiting; w != nil && imagePullReasons[w.Reason] {
			in.problems = append(in.problems, problem{
				key: prefix + "image-pull", reason: w.Reason, level: "ERROR",
				message: fmt.Sprintf("Kubernetes Error: pod %s cannot pull image %q (%s): %s", pod.Name, cs.Image, w.Reason, w.Message),
			})
		}
		if t := cs.State.Terminated; t != nil && (t.ExitCode != 0 || t.Reason == "OOMKilled") {
			reason := t.Reason
			if reason == "" {
				reason = "Error"
			}
			detail := ""
			if t.Message != "" {
				detail = ": " + t.Message
			}
			in.problems = append(in.problems, problem{
				key: prefix + "container/" + cs.Name, reason: reason, level: "ERROR", unlessFinished: true,
				message: fmt.Sprintf("Pod %s failed: container %q terminated with exit code %d (%s)%s", pod.Name, cs.Name, t.ExitCode, reason, detail),
			})
		}
	}
	if pod.Status.Phase == corev1.PodPending {
		for _, c := range pod.Status.Conditions {
			if c.Type != corev1.PodScheduled || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
				continue
			}
			waited := now.Sub(pod.CreationTimestamp.Time)
			if waited < grace {
				in.wantRecheck(grace - waited)
				continue
			}
			in.problems = append(in.problems, problem{
				key: prefix + "unschedulable", reason: "Unschedulable", level: "ERROR",
				message: fmt.Sprintf("Pod %s has been unschedulable for %s: %s", pod.Name, waited.Round(time.Second), strings.TrimSpace(c.Message)),
			})
		}
	}
}

func (in *inspection) wantRecheck(after time.Duration) {
	if in.recheck == 0 || after < in.recheck {
		in.recheck = after
	}
}
