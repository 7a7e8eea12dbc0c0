package jobs

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

var (
	t0     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	policy = PendingPolicy{QuotaTimeout: 10 * time.Minute, AdmissionTimeout: 10 * time.Minute, UnschedulableTimeout: 10 * time.Minute,
		ScaleUpTimeout: 15 * time.Minute, MissingObjectTimeout: 10 * time.Minute, ImagePullGrace: 3 * time.Minute}
)

func testJob() *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "prefect-job-1", Namespace: "ns", UID: "job-uid", CreationTimestamp: metav1.NewTime(t0)}}
}

func testPod(name string, phase corev1.PodPhase, statuses ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name), CreationTimestamp: metav1.NewTime(t0)},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "flow"}, {Name: "sidecar"}}},
		Status:     corev1.PodStatus{Phase: phase, ContainerStatuses: statuses},
	}
}

func running(name string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
}

func exited(name string, code int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Error"}}}
}

func waitingOn(name, reason, message string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Image: "img", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}
}

func unschedulable(pod *corev1.Pod) *corev1.Pod {
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient cpu."}}
	return pod
}

func event(reason, message string, at time.Time) *corev1.Event {
	return &corev1.Event{Reason: reason, Message: message, LastTimestamp: metav1.NewTime(at)}
}

// levels summarises what a run would be told: "LEVEL:key" per problem.
func levels(in inspection) []string {
	var out []string
	for _, p := range in.problems {
		out = append(out, p.level+":"+p.key)
	}
	return out
}

func hasLevel(in inspection, level string) bool {
	for _, p := range in.problems {
		if p.level == level {
			return true
		}
	}
	return false
}

func TestPendingPolicyByReason(t *testing.T) {
	quota := event("FailedCreate", `pods "prefect-job-1-x" is forbidden: exceeded quota: one-pod, requested: pods=1, used: pods=1, limited: pods=1`, t0)
	for _, tc := range []struct {
		name      string
		facts     jobFacts
		at        time.Duration
		policy    PendingPolicy
		wantWait  string // the waiting reason, "" for none
		wantError bool   // the run is failed (and the Job given up)
		wantText  string // in some line
	}{
		{name: "quota within its timeout", facts: jobFacts{failed: []*corev1.Event{quota}}, at: 9 * time.Minute,
			wantWait: waitQuota, wantText: "exceeded quota"},
		{name: "quota after its timeout", facts: jobFacts{failed: []*corev1.Event{quota}}, at: 10 * time.Minute,
			wantError: true, wantText: "Gave up after waiting 10m0s (quota)"},
		{name: "quota without limit", facts: jobFacts{failed: []*corev1.Event{quota}}, at: time.Hour, policy: PendingPolicy{ImagePullGrace: time.Minute},
			wantWait: waitQuota, wantText: "without limit"},
		{name: "quota once the Job has a pod", facts: jobFacts{failed: []*corev1.Event{quota}, pods: []*corev1.Pod{testPod("p", corev1.PodRunning, running("flow"))}}, at: time.Hour},
		{name: "webhook unreachable", facts: jobFacts{failed: []*corev1.Event{event("FailedCreate", `Internal error occurred: failed calling webhook "x.example.com": context deadline exceeded`, t0)}},
			at: time.Minute, wantWait: waitAdmission},
		{name: "missing service account", facts: jobFacts{failed: []*corev1.Event{event("FailedCreate", `pods "p" is forbidden: error looking up service account ns/flows: serviceaccount "flows" not found`, t0)}},
			at: time.Minute, wantWait: waitMissingObject},
		{name: "Pod Security denial", facts: jobFacts{failed: []*corev1.Event{event("FailedCreate", `pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false`, t0)}},
			wantError: true, wantText: "violates PodSecurity"},
		{name: "unschedulable within its timeout", facts: jobFacts{pods: []*corev1.Pod{unschedulable(testPod("p", corev1.PodPending))}}, at: 2 * time.Minute,
			wantWait: waitUnschedulable, wantText: "Insufficient cpu"},
		{name: "unschedulable after its timeout", facts: jobFacts{pods: []*corev1.Pod{unschedulable(testPod("p", corev1.PodPending))}}, at: 11 * time.Minute,
			wantError: true, wantText: "Gave up after waiting 11m0s (unschedulable)"},
		{name: "scale-up extends the wait", facts: jobFacts{pods: []*corev1.Pod{unschedulable(testPod("p", corev1.PodPending))},
			autoscaler: map[string][]*corev1.Event{"p": {event("TriggeredScaleUp", "pod triggered scale-up: [{gpu-pool 0->1 (max: 4)}]", t0)}}},
			at: 11 * time.Minute, wantWait: waitScaleUp, wantText: "gpu-pool"},
		{name: "no node group can fit", facts: jobFacts{pods: []*corev1.Pod{unschedulable(testPod("p", corev1.PodPending))},
			autoscaler: map[string][]*corev1.Event{"p": {event("NotTriggerScaleUp", "pod didn't trigger scale-up: 2 Insufficient cpu", t0)}}},
			at: time.Minute, wantWait: waitUnschedulable, wantText: "no node group can fit"},
		{name: "image pull within its grace", facts: jobFacts{pods: []*corev1.Pod{testPod("p", corev1.PodPending, waitingOn("flow", "ImagePullBackOff", "Back-off pulling image"))}},
			at: time.Minute, wantWait: waitImagePull},
		{name: "image pull after its grace", facts: jobFacts{pods: []*corev1.Pod{testPod("p", corev1.PodPending, waitingOn("flow", "ErrImagePull", "not found"))}},
			at: 3 * time.Minute, wantError: true, wantText: "(ErrImagePull)"},
		{name: "image pull grace 0 is 1.4.1", facts: jobFacts{pods: []*corev1.Pod{testPod("p", corev1.PodPending, waitingOn("flow", "ErrImagePull", "not found"))}},
			policy: PendingPolicy{QuotaTimeout: time.Minute}, wantError: true},
		{name: "invalid image name at once", facts: jobFacts{pods: []*corev1.Pod{testPod("p", corev1.PodPending, waitingOn("flow", "InvalidImageName", "bad"))}},
			wantError: true, wantText: "InvalidImageName"},
		{name: "missing secret", facts: jobFacts{pods: []*corev1.Pod{testPod("p", corev1.PodPending, waitingOn("flow", "CreateContainerConfigError", `secret "creds" not found`))}},
			at: time.Minute, wantWait: waitMissingObject, wantText: `secret "creds" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.policy
			if p == (PendingPolicy{}) {
				p = policy
			}
			if len(tc.facts.pods) > 0 {
				tc.facts.firstPod = tc.facts.pods[0].Name
			}
			in := inspect(testJob(), tc.facts, t0.Add(tc.at), p)
			gotWait := ""
			if in.waiting != nil {
				gotWait = in.waiting.reason
			}
			if gotWait != tc.wantWait {
				t.Errorf("waiting %q, want %q (%v)", gotWait, tc.wantWait, levels(in))
			}
			if hasLevel(in, prefect.LevelError) != tc.wantError {
				t.Errorf("problems %v, want an ERROR: %v", levels(in), tc.wantError)
			}
			if tc.wantWait != "" && !hasLevel(in, prefect.LevelWarning) {
				t.Errorf("a waiting Job gets a WARNING line: %v", levels(in))
			}
			for _, pr := range in.problems {
				if pr.level == prefect.LevelError && !pr.giveUp {
					t.Errorf("an ERROR before the flow started must give the Job up: %+v", pr)
				}
			}
			if tc.wantText != "" {
				found := false
				for _, pr := range in.problems {
					found = found || strings.Contains(pr.message, tc.wantText)
				}
				if !found {
					t.Errorf("no line contains %q: %+v", tc.wantText, in.problems)
				}
			}
		})
	}
}

func TestOnlyTheFlowsExitFailsTheRun(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	nativeSidecar := testPod("p", corev1.PodRunning, running("flow"))
	nativeSidecar.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always}}
	nativeSidecar.Status.InitContainerStatuses = []corev1.ContainerStatus{exited("proxy", 1)}
	restarting := testPod("p", corev1.PodRunning, exited("flow", 1))
	restarting.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	sidecarFailedPod := testPod("p", corev1.PodFailed, exited("flow", 0), exited("sidecar", 1))
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		fail string // part of the ERROR line, "" for none
	}{
		{"sidecar exits 1", testPod("p", corev1.PodRunning, running("flow"), exited("sidecar", 1)), ""},
		{"native sidecar exits 1", nativeSidecar, ""},
		{"the kubelet restarts the flow", restarting, ""},
		{"flow succeeded, sidecar failed the pod", sidecarFailedPod, ""},
		{"flow exits 1", testPod("p", corev1.PodRunning, exited("flow", 1), running("sidecar")), `container "flow" terminated with exit code 1`},
		{"pod failed", testPod("p", corev1.PodFailed), "Pod p failed (Failed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := inspect(testJob(), jobFacts{pods: []*corev1.Pod{tc.pod}, firstPod: "p"}, t0, policy)
			if tc.fail == "" {
				if len(in.problems) > 0 {
					t.Fatalf("reported %v", levels(in))
				}
				return
			}
			if len(in.problems) != 1 || in.problems[0].level != prefect.LevelError || !strings.Contains(in.problems[0].message, tc.fail) {
				t.Fatalf("problems %+v, want one ERROR with %q", in.problems, tc.fail)
			}
		})
	}
}

func TestDisruptionIsAWarningThenOneFreshStart(t *testing.T) {
	evicted := testPod("p", corev1.PodFailed)
	evicted.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"}}
	job := testJob()
	in := inspect(job, jobFacts{pods: []*corev1.Pod{evicted}, firstPod: "p"}, t0, policy)
	if got := levels(in); len(got) != 1 || got[0] != "WARNING:pod/p/disrupted" || !strings.Contains(in.problems[0].message, "EvictionByEvictionAPI") {
		t.Fatalf("eviction: %v %+v", got, in.problems)
	}
	// The Job starts a replacement: a WARNING that the flow runs again, nothing else.
	in = inspect(job, jobFacts{pods: []*corev1.Pod{evicted, testPod("q", corev1.PodRunning, running("flow"))}, firstPod: "p"}, t0, policy)
	if got := levels(in); len(got) != 2 || got[1] != "WARNING:pod/q/replacement" {
		t.Fatalf("replacement: %v", got)
	}
	// The Job gives up instead: the run is rescheduled, not failed.
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded"}}
	in = inspect(job, jobFacts{pods: []*corev1.Pod{evicted}, firstPod: "p"}, t0, policy)
	if hasLevel(in, prefect.LevelError) || len(in.problems) != 2 || !in.problems[1].reschedule {
		t.Fatalf("failed Job after an eviction: %+v", in.problems)
	}
}

func TestFailedCreateClassification(t *testing.T) {
	for msg, want := range map[string]string{
		`exceeded quota: q, requested: pods=1`:                                           waitQuota,
		`Internal error occurred: failed calling webhook "w": connection refused`:        waitAdmission,
		`error looking up service account ns/sa: serviceaccount "sa" not found`:          waitMissingObject,
		`admission webhook "w" denied the request: no`:                                   "",
		`pods "p" is forbidden: maximum cpu usage per Container is 2, but limit is 4`:    "",
		`Pod "p" is invalid: spec.containers[0].image: Required value`:                   "",
		`pods "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces`: "",
	} {
		if got := failedCreateKind(msg); got != want {
			t.Errorf("%q: %q, want %q", msg, got, want)
		}
	}
}
