package jobs

import (
	"fmt"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// problem is something about a flow run's Job written to the run, once.
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
	// giveUp deletes the Job once the report landed: its flow never started
	// and must not start after the run was failed.
	giveUp bool
	// reschedule sets the run Scheduled instead of Failed: its pod was
	// disrupted and the Job will not start another, so the run gets a fresh
	// attempt (finished task runs are skipped by Prefect's flow runner).
	reschedule bool
	// failedPod and failedContainer name the flow container that failed,
	// whose output the agent saves into the run log (evidence.go).
	failedPod, failedContainer string
}

// waiting is why a Job's flow has not started, on purpose, and since when.
type waiting struct {
	reason  string
	since   time.Time
	message string
}

// inspection is what a look at a Job, its pods and events found.
type inspection struct {
	problems []problem
	// waiting is set while the Job waits on purpose (quota, capacity...).
	waiting *waiting
	// recheck is when a waiting Job's timeout is due.
	recheck time.Duration
	// complete says the Job succeeded; a failed one is among the problems.
	complete bool
	// flowStarted says the flow container ran in some pod of the Job.
	flowStarted bool
}

// jobFacts is what inspect reads besides the Job: its pods (the gone ones
// with a deletion time), its FailedCreate events, cluster-autoscaler's events
// by pod name, and the name of its first pod (others are replacements).
type jobFacts struct {
	pods       []*corev1.Pod
	failed     []*corev1.Event
	autoscaler map[string][]*corev1.Event
	firstPod   string
	// disrupted says an earlier look found a pod of the Job disrupted (the
	// pod may be gone from the cache since).
	disrupted bool
}

// inspect looks at a Job and what belongs to it, at time now, under a policy.
func inspect(job *batchv1.Job, f jobFacts, now time.Time, policy PendingPolicy) inspection {
	if in, ok := inspectDeadline(job, f, now); ok {
		return in
	}
	var in inspection
	disrupted := f.disrupted
	flowFailed := false
	for _, pod := range f.pods {
		r := in.inspectPod(job, pod, pod.Name != f.firstPod, f.autoscaler[pod.Name], now, policy)
		disrupted = disrupted || r.disrupted
		flowFailed = flowFailed || r.failed
	}
	hadPods := len(f.pods) > 0 || job.Status.Active+job.Status.Succeeded+job.Status.Failed > 0
	if ev := latestEvent(f.failed); ev != nil && !hadPods && !manifest.JobFinished(job) {
		in.inspectFailedCreate(job, ev, now, policy)
	}
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			in.complete = true
		case batchv1.JobFailed:
			if disrupted && !flowFailed {
				in.problems = append(in.problems, problem{
					key: "job/failed", reason: c.Reason, level: prefect.LevelWarning, unlessFinished: true, reschedule: true,
					message: fmt.Sprintf("Job %s failed (%s) after its pod was disrupted and will not start another: the flow run is rescheduled for a fresh attempt", job.Name, c.Reason),
				})
				continue
			}
			in.problems = append(in.problems, problem{
				key: "job/failed", reason: c.Reason, level: prefect.LevelError, unlessFinished: true,
				message: fmt.Sprintf("Job %s failed (%s): %s", job.Name, c.Reason, c.Message),
			})
		}
	}
	if in.flowStarted || in.complete {
		in.waiting = nil
	}
	return in
}

// inspectFailedCreate handles the Job controller failing to create the pod.
func (in *inspection) inspectFailedCreate(job *batchv1.Job, ev *corev1.Event, now time.Time, policy PendingPolicy) {
	kind := failedCreateKind(ev.Message)
	if kind == "" {
		in.problems = append(in.problems, problem{
			key: "job/failed-create", reason: "FailedCreate", level: prefect.LevelError, giveUp: true,
			message: fmt.Sprintf("Kubernetes refuses to create a pod for Job %s (FailedCreate): %s", job.Name, ev.Message),
		})
		return
	}
	in.wait(job.Name, "job/", kind, "FailedCreate", fmt.Sprintf("Kubernetes cannot create a pod for Job %s yet (FailedCreate): %s", job.Name, ev.Message),
		job.CreationTimestamp.Time, now, policy)
}

// podResult tells inspect what a pod means for the Job as a whole.
type podResult struct{ disrupted, failed bool }

func (in *inspection) inspectPod(job *batchv1.Job, pod *corev1.Pod, replacement bool, autoscaler []*corev1.Event, now time.Time, policy PendingPolicy) podResult {
	var r podResult
	prefix := "pod/" + pod.Name + "/"
	if replacement {
		in.problems = append(in.problems, problem{
			key: prefix + "replacement", reason: "PodReplaced", level: prefect.LevelWarning,
			message: fmt.Sprintf("Job %s started another pod, %s, which runs the flow again", job.Name, pod.Name),
		})
	}
	flow := flowStatus(pod)
	if pod.Status.Phase == corev1.PodRunning || pod.Status.Phase == corev1.PodSucceeded ||
		(flow != nil && (flow.State.Running != nil || flow.State.Terminated != nil)) {
		in.flowStarted = true
	}
	finished := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if why := disruption(pod, job); why != "" {
		r.disrupted = true
		in.problems = append(in.problems, problem{
			key: prefix + "disrupted", reason: "Disrupted", level: prefect.LevelWarning, unlessFinished: true,
			message: fmt.Sprintf("Pod %s of Job %s %s; the Job starts another pod unless its backoffLimit is spent, else the run is rescheduled", pod.Name, job.Name, why),
		})
		return r
	}
	if msg := flowFailure(pod, flow); msg != "" {
		r.failed = true
		reason := "Error"
		if flow != nil && flow.State.Terminated != nil && flow.State.Terminated.Reason != "" {
			reason = flow.State.Terminated.Reason
		}
		p := problem{key: prefix + "failed", reason: reason, level: prefect.LevelError, unlessFinished: true, message: msg}
		if flow != nil && flow.State.Terminated != nil {
			p.failedPod, p.failedContainer = pod.Name, flow.Name
		}
		in.problems = append(in.problems, p)
		return r
	}
	if finished || pod.Status.Phase != corev1.PodPending || pod.DeletionTimestamp != nil {
		return r
	}
	in.inspectPending(job, pod, autoscaler, now, policy)
	return r
}

// inspectPending sorts out why a pending pod waits.
func (in *inspection) inspectPending(job *batchv1.Job, pod *corev1.Pod, autoscaler []*corev1.Event, now time.Time, policy PendingPolicy) {
	prefix := "pod/" + pod.Name + "/"
	scheduledAt := pod.CreationTimestamp.Time
	for _, c := range pod.Status.Conditions {
		if c.Type != corev1.PodScheduled {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			if !c.LastTransitionTime.IsZero() {
				scheduledAt = c.LastTransitionTime.Time
			}
			continue
		}
		if c.Reason != corev1.PodReasonUnschedulable {
			continue
		}
		kind, msg := waitUnschedulable, strings.TrimSpace(c.Message)
		sort.Slice(autoscaler, func(i, j int) bool { return eventTime(autoscaler[i]).Before(eventTime(autoscaler[j])) })
		for _, ev := range autoscaler {
			switch ev.Reason {
			case "TriggeredScaleUp":
				kind = waitScaleUp
				msg = "cluster-autoscaler is adding a node: " + ev.Message
			case "NotTriggerScaleUp":
				in.problems = append(in.problems, problem{
					key: prefix + "no-scale-up", reason: "NotTriggerScaleUp", level: prefect.LevelWarning,
					message: fmt.Sprintf("Pod %s of Job %s: no node group can fit it, cluster-autoscaler will not add a node: %s", pod.Name, job.Name, ev.Message),
				})
			}
		}
		in.wait(job.Name, prefix, kind, corev1.PodReasonUnschedulable, fmt.Sprintf("Pod %s of Job %s cannot be scheduled yet: %s", pod.Name, job.Name, msg), pod.CreationTimestamp.Time, now, policy)
		return
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "InvalidImageName", "ErrImageNeverPull":
			in.problems = append(in.problems, problem{
				key: prefix + "image-pull", reason: w.Reason, level: prefect.LevelError, giveUp: true,
				message: fmt.Sprintf("Kubernetes Error: pod %s cannot pull image %q (%s): %s", pod.Name, cs.Image, w.Reason, w.Message),
			})
			return
		case "ErrImagePull", "ImagePullBackOff":
			in.wait(job.Name, prefix, waitImagePull, w.Reason, fmt.Sprintf("Kubernetes Error: pod %s cannot pull image %q (%s): %s", pod.Name, cs.Image, w.Reason, w.Message),
				scheduledAt, now, policy)
			return
		case "CreateContainerConfigError":
			if strings.Contains(w.Message, "not found") {
				in.wait(job.Name, prefix, waitMissingObject, w.Reason, fmt.Sprintf("Pod %s of Job %s cannot start container %q yet: %s", pod.Name, job.Name, cs.Name, w.Message),
					scheduledAt, now, policy)
				return
			}
			in.problems = append(in.problems, problem{
				key: prefix + "config", reason: w.Reason, level: prefect.LevelError, giveUp: true,
				message: fmt.Sprintf("Pod %s of Job %s cannot start container %q (%s): %s", pod.Name, job.Name, cs.Name, w.Reason, w.Message),
			})
			return
		}
	}
}

// wait records a Job waiting on purpose: one WARNING at once, and after the
// reason's timeout an ERROR that gives up. kubeReason names the Kubernetes
// reason in metrics (FailedCreate, Unschedulable, ErrImagePull...).
func (in *inspection) wait(jobName, prefix, reason, kubeReason, message string, since, now time.Time, policy PendingPolicy) {
	limit := policy.timeout(reason)
	waited := now.Sub(since)
	if waited < 0 {
		waited = 0
	}
	if limit <= 0 && failsAtZero(reason) {
		in.problems = append(in.problems, problem{
			key: prefix + "gave-up/" + reason, reason: kubeReason, level: prefect.LevelError, giveUp: true,
			message: fmt.Sprintf("%s. Job %s deleted", message, jobName),
		})
		return
	}
	if limit > 0 && waited >= limit {
		in.problems = append(in.problems, problem{
			key: prefix + "gave-up/" + reason, reason: kubeReason, level: prefect.LevelError, giveUp: true,
			message: fmt.Sprintf("%s. Gave up after waiting %s (%s); Job %s deleted", message, waited.Round(time.Second), reason, jobName),
		})
		return
	}
	if in.waiting == nil || since.Before(in.waiting.since) {
		in.waiting = &waiting{reason: reason, since: since, message: message}
	}
	after := "the run is failed if it still waits after " + limit.String()
	if limit <= 0 {
		after = "the agent waits for it without limit"
	}
	in.problems = append(in.problems, problem{
		key: prefix + "waiting/" + reason, reason: kubeReason, level: prefect.LevelWarning,
		message: fmt.Sprintf("%s. The flow run stays Submitted while Kubernetes retries; %s", message, after),
	})
	if limit > 0 {
		in.wantRecheck(limit - waited)
	}
}

func (in *inspection) wantRecheck(after time.Duration) {
	if after < time.Second {
		after = time.Second
	}
	if in.recheck == 0 || after < in.recheck {
		in.recheck = after
	}
}

// flowContainerName is the container the flow runs in: "flow", else the first.
func flowContainerName(pod *corev1.Pod) string {
	if i := manifest.FlowContainerIndex(pod.Spec.Containers); i >= 0 {
		return pod.Spec.Containers[i].Name
	}
	return manifest.FlowContainer
}

// flowStatus is the flow container's status, if reported.
func flowStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	name := flowContainerName(pod)
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == name {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// flowFailure describes how the flow failed in this pod, or "" if it did
// not: the flow container ended in failure and the kubelet will not restart
// it, or the pod failed. Sidecars, native sidecars and containers the kubelet
// restarts do not count.
func flowFailure(pod *corev1.Pod, flow *corev1.ContainerStatus) string {
	restarts := pod.Spec.RestartPolicy == corev1.RestartPolicyAlways || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
	if flow != nil {
		if t := flow.State.Terminated; t != nil && (t.ExitCode != 0 || t.Reason == "OOMKilled") && (!restarts || pod.Status.Phase == corev1.PodFailed) {
			return terminatedMessage(pod.Name, "container", flow.Name, t)
		}
	}
	if pod.Status.Phase != corev1.PodFailed {
		return ""
	}
	native := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			native[c.Name] = true
		}
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && !native[cs.Name] {
			return terminatedMessage(pod.Name, "init container", cs.Name, t)
		}
	}
	if flow != nil && flow.State.Terminated != nil && flow.State.Terminated.ExitCode == 0 {
		return "" // the flow succeeded; a sidecar's exit failed the pod
	}
	reason := pod.Status.Reason
	if reason == "" {
		reason = "Failed"
	}
	if pod.Status.Message == "" {
		return fmt.Sprintf("Pod %s failed (%s)", pod.Name, reason)
	}
	return fmt.Sprintf("Pod %s failed (%s): %s", pod.Name, reason, pod.Status.Message)
}

func terminatedMessage(pod, what, name string, t *corev1.ContainerStateTerminated) string {
	reason := t.Reason
	if reason == "" {
		reason = "Error"
	}
	detail := ""
	if t.Message != "" {
		detail = ": " + t.Message
	}
	return fmt.Sprintf("Pod %s failed: %s %q terminated with exit code %d (%s)%s", pod, what, name, t.ExitCode, reason, detail)
}

// disruption describes how the pod was taken away from the flow (eviction,
// preemption, node loss, deletion), or "" if it was not.
func disruption(pod *corev1.Pod, job *batchv1.Job) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return strings.TrimSpace(fmt.Sprintf("was disrupted (%s): %s", c.Reason, c.Message))
		}
	}
	switch pod.Status.Reason {
	case "Evicted", "Preempting", "NodeLost", "Terminated", "NodeShutdown":
		return strings.TrimSpace(fmt.Sprintf("was stopped by Kubernetes (%s): %s", pod.Status.Reason, pod.Status.Message))
	}
	if pod.DeletionTimestamp != nil && job.DeletionTimestamp == nil &&
		pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		return "was deleted before it finished"
	}
	return ""
}

func eventTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.CreationTimestamp.Time
}

func latestEvent(events []*corev1.Event) *corev1.Event {
	var latest *corev1.Event
	for _, ev := range events {
		if latest == nil || eventTime(ev).After(eventTime(latest)) {
			latest = ev
		}
	}
	return latest
}
