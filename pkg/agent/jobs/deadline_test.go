package jobs

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// TestRunTimeLimitFailsTheRunNamingTheLimit: a Job Kubernetes stopped at its
// deadline is one ERROR naming the limit; the pods it deleted for it are not
// a disruption, before or after the Job's condition arrives.
func TestRunTimeLimitFailsTheRunNamingTheLimit(t *testing.T) {
	created := time.Unix(10_000, 0)
	job := func(conditions ...batchv1.JobCondition) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "flow-1", Namespace: "ns", UID: "j1", CreationTimestamp: metav1.NewTime(created),
			Annotations: map[string]string{manifest.AnnotationRunTimeLimit: "30s (--max-run-time)"}},
			Status: batchv1.JobStatus{Conditions: conditions}}
	}
	deleting := metav1.NewTime(created.Add(31 * time.Second))
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "flow-1-abc", Namespace: "ns", DeletionTimestamp: &deleting,
		OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Name: "flow-1", UID: "j1"}}},
		Spec:   corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "flow"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	facts := jobFacts{pods: []*corev1.Pod{pod}, firstPod: pod.Name}
	policy := DefaultPendingPolicy()

	// Past the limit, pods going, the condition not seen yet: nothing to say.
	if in := inspect(job(), facts, created.Add(31*time.Second), policy); len(in.problems) != 0 {
		t.Fatalf("problems before the Job's condition: %+v", in.problems)
	}
	for _, cond := range []batchv1.JobConditionType{batchv1.JobFailureTarget, batchv1.JobFailed} {
		in := inspect(job(batchv1.JobCondition{Type: cond, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline"}),
			facts, created.Add(32*time.Second), policy)
		if len(in.problems) != 1 {
			t.Fatalf("%s: problems %+v, want the run time limit alone", cond, in.problems)
		}
		p := in.problems[0]
		want := "Job flow-1 ran longer than its run time limit, 30s (--max-run-time): Kubernetes stopped it (DeadlineExceeded)"
		if p.level != prefect.LevelError || !strings.Contains(p.message, want) || p.reschedule {
			t.Fatalf("%s: %+v, want an ERROR containing %q", cond, p, want)
		}
	}
	// Before the limit, a pod deleted under the flow is a disruption as ever.
	in := inspect(job(), facts, created.Add(10*time.Second), policy)
	if len(in.problems) != 1 || !strings.Contains(in.problems[0].message, "was deleted before it finished") {
		t.Fatalf("a pod deleted before the limit: %+v, want the disruption warning", in.problems)
	}
}
