package jobs

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// The informers' caches hold these compact types instead of Jobs, Pods and
// Events: a trimmed ObjectMeta and the few fields inspect reads. At 10,000
// Jobs with running pods that is a fraction of the typed objects, which
// embed their whole spec by value even when it is emptied. inspect works on
// typed objects rebuilt from them for the Job at hand.

// cachedJob is what the agent keeps of a Job.
type cachedJob struct {
	metav1.ObjectMeta
	conditions              []batchv1.JobCondition
	active, succeeded, fail int32
}

// cachedPod is what the agent keeps of a pod.
type cachedPod struct {
	metav1.ObjectMeta
	restartPolicy corev1.RestartPolicy
	// flowContainer is the name of the container the flow runs in.
	flowContainer string
	// nativeSidecars are init containers with restartPolicy Always.
	nativeSidecars  []string
	phase           corev1.PodPhase
	reason, message string
	conditions      []corev1.PodCondition
	initStatuses    []containerState
	statuses        []containerState
}

type containerState struct {
	name, image string
	state       corev1.ContainerState
}

// cachedEvent is what the agent keeps of an event.
type cachedEvent struct {
	metav1.ObjectMeta
	involved        corev1.ObjectReference
	reason, message string
	last            metav1.Time
}

// Kept annotations of a Job: what the agent recorded on it, and the run
// version it was made for (to retire an older submission's Job).
// The flow name, the run's labels and the run time limit serve the guardrails.
var keptJobAnnotations = []string{AnnotationReported, AnnotationWaitingReason, AnnotationWaitingSince, manifest.AnnotationFlowRunVersion,
	manifest.AnnotationFlowName, manifest.AnnotationFlowRunLabels, manifest.AnnotationRunTimeLimit, manifest.AnnotationRelaunch}

// leanMeta keeps name, namespace, uid, resource version, times and, given
// keys, those labels and annotations.
func leanMeta(m *metav1.ObjectMeta, labels, annotations []string, owners bool) metav1.ObjectMeta {
	lean := metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp}
	pick := func(from map[string]string, keys []string) map[string]string {
		var out map[string]string
		for _, k := range keys {
			if v, ok := from[k]; ok {
				if out == nil {
					out = make(map[string]string, len(keys))
				}
				out[k] = v
			}
		}
		return out
	}
	lean.Labels, lean.Annotations = pick(m.Labels, labels), pick(m.Annotations, annotations)
	if owners {
		for _, ref := range m.OwnerReferences {
			if ref.Kind == "Job" {
				lean.OwnerReferences = append(lean.OwnerReferences, metav1.OwnerReference{Kind: ref.Kind, Name: ref.Name, UID: ref.UID})
			}
		}
	}
	return lean
}

// compact is the informers' transform: typed objects in, compact ones out.
func compact(obj any) (any, error) {
	switch o := obj.(type) {
	case *batchv1.Job:
		j := &cachedJob{ObjectMeta: leanMeta(&o.ObjectMeta, []string{manifest.LabelFlowRunID, manifest.LabelIdentifier}, keptJobAnnotations, false),
			active: o.Status.Active, succeeded: o.Status.Succeeded, fail: o.Status.Failed}
		for _, c := range o.Status.Conditions {
			if c.Status == corev1.ConditionTrue {
				j.conditions = append(j.conditions, batchv1.JobCondition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message})
			}
		}
		return j, nil
	case *corev1.Pod:
		p := &cachedPod{ObjectMeta: leanMeta(&o.ObjectMeta, nil, nil, true), restartPolicy: o.Spec.RestartPolicy,
			flowContainer: flowContainerName(o), phase: o.Status.Phase, reason: o.Status.Reason, message: o.Status.Message}
		for _, c := range o.Spec.InitContainers {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				p.nativeSidecars = append(p.nativeSidecars, c.Name)
			}
		}
		for _, c := range o.Status.Conditions {
			if c.Type == corev1.PodScheduled || c.Type == corev1.DisruptionTarget {
				p.conditions = append(p.conditions, corev1.PodCondition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message, LastTransitionTime: c.LastTransitionTime})
			}
		}
		p.initStatuses, p.statuses = states(o.Status.InitContainerStatuses), states(o.Status.ContainerStatuses)
		return p, nil
	case *corev1.Event:
		return &cachedEvent{ObjectMeta: leanMeta(&o.ObjectMeta, nil, nil, false),
			involved: corev1.ObjectReference{Kind: o.InvolvedObject.Kind, Namespace: o.InvolvedObject.Namespace, Name: o.InvolvedObject.Name, UID: o.InvolvedObject.UID},
			reason:   o.Reason, message: o.Message, last: lastSeen(o)}, nil
	}
	return obj, nil
}

func states(in []corev1.ContainerStatus) []containerState {
	var out []containerState
	for _, cs := range in {
		st := cs.State
		if t := st.Terminated; t != nil {
			st.Terminated = &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, Reason: t.Reason, Message: t.Message}
		}
		if st.Running != nil {
			st.Running = &corev1.ContainerStateRunning{}
		}
		out = append(out, containerState{name: cs.Name, image: cs.Image, state: st})
	}
	return out
}

func lastSeen(ev *corev1.Event) metav1.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp
	case !ev.EventTime.IsZero():
		return metav1.NewTime(ev.EventTime.Time)
	}
	return ev.CreationTimestamp
}

// job rebuilds the typed Job inspect reads.
func (j *cachedJob) job() *batchv1.Job {
	return &batchv1.Job{ObjectMeta: *j.ObjectMeta.DeepCopy(), Status: batchv1.JobStatus{
		Conditions: j.conditions, Active: j.active, Succeeded: j.succeeded, Failed: j.fail}}
}

// finished tells whether the Job completed or failed.
func (j *cachedJob) finished() bool { return manifest.ConditionsFinished(j.conditions) }

// pod rebuilds the typed pod inspect reads.
func (p *cachedPod) pod() *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{ObjectMeta: *p.ObjectMeta.DeepCopy(),
		Spec:   corev1.PodSpec{RestartPolicy: p.restartPolicy, Containers: []corev1.Container{{Name: p.flowContainer}}},
		Status: corev1.PodStatus{Phase: p.phase, Reason: p.reason, Message: p.message, Conditions: p.conditions}}
	for _, name := range p.nativeSidecars {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: name, RestartPolicy: &always})
	}
	typed := func(in []containerState) []corev1.ContainerStatus {
		var out []corev1.ContainerStatus
		for _, cs := range in {
			out = append(out, corev1.ContainerStatus{Name: cs.name, Image: cs.image, State: cs.state})
		}
		return out
	}
	pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses = typed(p.initStatuses), typed(p.statuses)
	return pod
}

// event rebuilds the typed event inspect reads.
func (e *cachedEvent) event() *corev1.Event {
	return &corev1.Event{ObjectMeta: *e.ObjectMeta.DeepCopy(), InvolvedObject: e.involved, Reason: e.reason, Message: e.message, LastTimestamp: e.last}
}

// The compact types are runtime.Objects, as informers expect of what they hold.

func (j *cachedJob) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (j *cachedJob) DeepCopyObject() runtime.Object {
	c := *j
	c.ObjectMeta = *j.ObjectMeta.DeepCopy()
	c.conditions = append([]batchv1.JobCondition(nil), j.conditions...)
	return &c
}

func (p *cachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (p *cachedPod) DeepCopyObject() runtime.Object {
	c := *p
	c.ObjectMeta = *p.ObjectMeta.DeepCopy()
	c.nativeSidecars = append([]string(nil), p.nativeSidecars...)
	c.conditions = append([]corev1.PodCondition(nil), p.conditions...)
	c.initStatuses = append([]containerState(nil), p.initStatuses...)
	c.statuses = append([]containerState(nil), p.statuses...)
	return &c
}

func (e *cachedEvent) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (e *cachedEvent) DeepCopyObject() runtime.Object {
	c := *e
	c.ObjectMeta = *e.ObjectMeta.DeepCopy()
	return &c
}
