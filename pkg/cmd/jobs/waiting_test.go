package jobs

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentjobs "github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

func TestWaitingJobShowsReasonAndWait(t *testing.T) {
	now := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "etl-aaaa", Annotations: map[string]string{
		agentjobs.AnnotationWaitingReason: "quota", agentjobs.AnnotationWaitingSince: now.Add(-3 * time.Minute).Format(time.RFC3339),
	}}}
	table := toTable([]batchv1.Job{*job}, nil, now)
	if got := table.Rows[0].Cells[3]; got != "Waiting (quota) 3m" {
		t.Fatalf("STATUS %q, want %q", got, "Waiting (quota) 3m")
	}
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	if got := toTable([]batchv1.Job{*job}, nil, now).Rows[0].Cells[3]; got != "Complete" {
		t.Fatalf("a finished Job's STATUS %q, want Complete", got)
	}
}
