package jobs

import (
	"context"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// EventComponent is the source of the Events the agent records on its Jobs.
const EventComponent = "prefect-agent"

// Reasons of the Events the agent records on its Jobs, one per decision, so
// that `kubectl describe job` tells the Job's story from the agent's side.
const (
	EventCreated         = "Created"         // the Job was created for a submission
	EventRecovered       = "Recovered"       // created for a run left Submitted without a Job
	EventWaiting         = "Waiting"         // the flow has not started and the agent waits on purpose
	EventGaveUp          = "GaveUp"          // the wait ran out, or cannot end: the run failed
	EventFailureReported = "FailureReported" // the flow failed and the run was told
	EventReported        = "Reported"        // any other line the agent wrote to the run about the Job
	EventSuperseded      = "Superseded"      // a newer submission of the run replaced the Job
	EventCancelled       = "Cancelled"       // the run was cancelled in Prefect
	EventDeleted         = "Deleted"         // the agent deleted the Job
	EventDrift           = "Drift"           // Prefect and the cluster disagree about the run
)

// Events records Events on Jobs through client-go's broadcaster, whose
// correlator aggregates repeats and whose spam filter bounds each Job to a
// burst of 25 Events refilled one per 5 minutes: the kubelet's defaults.
type Events struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

// NewEvents returns a recorder that sends nothing until started.
func NewEvents() *Events {
	b := record.NewBroadcaster()
	return &Events{broadcaster: b, recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: EventComponent})}
}

// Start sends the recorded Events to the API server until stop is called;
// stop also ends the broadcaster, so an agent records Events for one Run.
func (e *Events) Start(ctx context.Context, kube kubernetes.Interface) (stop func()) {
	sink := e.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	logged := e.broadcaster.StartStructuredLogging(4)
	klog.FromContext(ctx).V(4).Info("Recording Events on the agent's Jobs")
	return func() {
		sink.Stop()
		logged.Stop()
		e.broadcaster.Shutdown()
	}
}

// On records one Event on a Job. A Job without a UID (never created) gets none:
// `kubectl describe` matches Events to a Job by its UID.
func (e *Events) On(job *batchv1.Job, eventType, reason, message string) {
	if e == nil || job == nil || job.UID == "" {
		return
	}
	ref := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: job.Name, Namespace: job.Namespace, UID: job.UID, ResourceVersion: job.ResourceVersion}}
	ref.APIVersion, ref.Kind = "batch/v1", "Job"
	e.recorder.Event(ref, eventType, reason, truncateEventMessage(message))
}

// maxEventMessage is what the API server accepts in an Event's message.
const maxEventMessage = 1024

func truncateEventMessage(m string) string {
	if len(m) <= maxEventMessage {
		return m
	}
	return m[:maxEventMessage-3] + "..."
}
