package agent

import (
	"context"
	"strconv"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// TestJobOfAnEarlierSubmissionIsDeletedByJobManagement covers the Job a
// re-submission could not delete (its delete failed, or the Job appeared
// late): job management deletes it, with a line on the run, and leaves the
// current submission's Job alone.
func TestJobOfAnEarlierSubmissionIsDeletedByJobManagement(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(suspendedRun(t))
	e.start("", nil)
	e.waitSubmitted(run.ID)
	current := e.jobsFor(run.ID)[0]
	version, err := strconv.Atoi(current.Annotations[manifest.AnnotationFlowRunVersion])
	if err != nil {
		t.Fatal(err)
	}
	// The Job an earlier submission (two versions before) left, not finished.
	old := current.DeepCopy()
	name, identifier, err := manifest.JobName("", run.ID, version-2, "")
	if err != nil {
		t.Fatal(err)
	}
	old.ObjectMeta = metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: map[string]string{}, Annotations: map[string]string{}}
	for k, v := range current.Labels {
		old.Labels[k] = v
	}
	old.Labels[manifest.LabelIdentifier] = identifier
	old.Annotations[manifest.AnnotationFlowRunVersion] = strconv.Itoa(version - 2)
	old.Spec.Selector, old.Spec.Template.Labels, old.Status = nil, old.Labels, batchv1.JobStatus{}
	if _, err := cluster.Client.BatchV1().Jobs(e.ns).Create(context.Background(), old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the earlier submission's Job to be deleted", func() bool {
		for _, j := range e.jobsFor(run.ID) {
			if j.Name == name && j.DeletionTimestamp == nil {
				return false
			}
		}
		return true
	})
	jobs := e.jobsFor(run.ID)
	if len(jobs) != 1 || jobs[0].Name != current.Name || jobs[0].DeletionTimestamp != nil {
		t.Fatalf("Jobs left %v, want only the current submission's %s", jobs, current.Name)
	}
	// The line on the run is written after the delete: wait for it.
	eventually(t, "the deletion's line on the run", func() bool {
		got, _ := e.em.FlowRun(run.ID)
		return contains(logsAt(got, "INFO"), "Deleted Job "+name+" of an earlier submission")
	})
	if got, _ := e.em.FlowRun(run.ID); got.State != "Submitted" {
		t.Fatalf("run %s, log %q", got.State, logsAt(got, "INFO"))
	}
}

// TestJobCompletedWhileTheRunIsRunning covers a flow whose task run retries
// later: its process exits 0 and leaves the run Running, which is not a flow
// that failed to report; the line on the run says both.
func TestJobCompletedWhileTheRunIsRunning(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(suspendedRun(t))
	e.start("", managed(false))
	e.waitSubmitted(run.ID)
	if _, err := e.em.SetFlowRunState(run.ID, "Running", "Running flow."); err != nil {
		t.Fatal(err)
	}
	job := e.jobsFor(run.ID)[0]
	resume := []byte(`{"spec":{"suspend":false}}`)
	if _, err := cluster.Client.BatchV1().Jobs(e.ns).Patch(context.Background(), job.Name, types.MergePatchType, resume, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.warned(run.ID, "Job "+job.Name+" completed while the flow run is Running: if a task run waits for a retry")
	got, _ := e.em.FlowRun(run.ID)
	if contains(logsAt(got, "WARNING"), "never reported a final state") || got.State != "Running" {
		t.Fatalf("run %s, warnings %q", got.State, logsAt(got, "WARNING"))
	}
}
