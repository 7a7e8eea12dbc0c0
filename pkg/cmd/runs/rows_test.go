package runs

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// TestDriftRules checks each drift kind and its absence on the cases next
// to it: a pending pod counts as live, only the newest Job's failure counts,
// a pod being deleted does not run.
func TestDriftRules(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	later := metav1.NewTime(now.Add(time.Minute))
	job := func(name string, created metav1.Time, failed bool) batchv1.Job {
		j := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: created, Labels: map[string]string{manifest.LabelFlowRunID: "r"}}}
		if failed {
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}
		}
		return j
	}
	pod := func(phase corev1.PodPhase, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", CreationTimestamp: now}, Status: corev1.PodStatus{Phase: phase}}
		if deleting {
			p.DeletionTimestamp = &later
		}
		return p
	}
	for _, c := range []struct {
		name  string
		state string
		jobs  []batchv1.Job
		pods  map[string][]*corev1.Pod
		want  string
	}{
		{"running with a running pod", "Running", []batchv1.Job{job("a", now, false)}, map[string][]*corev1.Pod{"ns/a": {pod(corev1.PodRunning, false)}}, ""},
		{"running with a pending pod", "Running", []batchv1.Job{job("a", now, false)}, map[string][]*corev1.Pod{"ns/a": {pod(corev1.PodPending, false)}}, ""},
		{"running with a pod being deleted", "Running", []batchv1.Job{job("a", now, false)}, map[string][]*corev1.Pod{"ns/a": {pod(corev1.PodRunning, true)}}, DriftRunningWithoutPod},
		{"running, newest Job failed", "Running", []batchv1.Job{job("a", now, false), job("b", later, true)}, nil, DriftJobFailed},
		{"running, an older Job failed, the newest runs", "Running", []batchv1.Job{job("a", now, true), job("b", later, false)}, map[string][]*corev1.Pod{"ns/b": {pod(corev1.PodRunning, false)}}, ""},
		{"submitted with a Job", "Submitted", []batchv1.Job{job("a", now, false)}, nil, ""},
		{"failed with a running pod", "Failed", []batchv1.Job{job("a", now, false)}, map[string][]*corev1.Pod{"ns/a": {pod(corev1.PodRunning, false)}}, DriftFinishedPodRunning},
		{"failed with a failed pod", "Failed", []batchv1.Job{job("a", now, true)}, map[string][]*corev1.Pod{"ns/a": {pod(corev1.PodFailed, false)}}, ""},
		{"cancelled with a pending pod", "Cancelled", []batchv1.Job{job("a", now, false)}, map[string][]*corev1.Pod{"ns/a": {pod(corev1.PodPending, false)}}, DriftFinishedPodRunning},
	} {
		rows := buildRows(c.jobs, c.pods, map[string]prefect.RunOverview{"r": {ID: "r", State: c.state}}, nil, "ns")
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows", c.name, len(rows))
		}
		if got := joinOrNone(rows[0].Drift); (c.want == "" && got != "<none>") || (c.want != "" && got != c.want) {
			t.Errorf("%s: drift %s, want %q", c.name, got, c.want)
		}
	}
	// A run Prefect shows Submitted by an agent of this name in another
	// namespace, or by one that names no namespace (the 1.4.1 agent), is
	// not listed.
	extra := []prefect.RunOverview{
		{ID: "x", State: "Submitted", By: prefect.Submission{Namespace: "other"}},
		{ID: "y", State: "Submitted", By: prefect.Submission{Namespace: "ns"}},
		{ID: "z", State: "Running"},
	}
	rows := buildRows(nil, nil, nil, extra, "ns")
	if len(rows) != 1 || rows[0].RunID != "y" || joinOrNone(rows[0].Drift) != DriftSubmittedWithoutJob {
		t.Fatalf("runs without Jobs: %+v", rows)
	}
	// Across namespaces, each where its mark says.
	rows = buildRows(nil, nil, nil, extra, "")
	if len(rows) != 2 || rows[0].Namespace != "ns" || rows[1].Namespace != "other" {
		t.Fatalf("runs without Jobs, all namespaces: %+v", rows)
	}
}
