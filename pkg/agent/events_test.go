package agent

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// holdJob keeps a run's Job describable after the agent deletes it: a
// finalizer of the test's own, removed when the test ends.
func (e *env) holdJob(runID string) string {
	e.t.Helper()
	var name string
	eventually(e.t, "the Job of "+runID+" to exist", func() bool {
		jobs := e.jobsFor(runID)
		if len(jobs) == 0 {
			return false
		}
		name = jobs[0].Name
		return true
	})
	patch := []byte(`{"metadata":{"finalizers":["testbed.invalid/hold"]}}`)
	if _, err := cluster.Client.BatchV1().Jobs(e.ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_, _ = cluster.Client.BatchV1().Jobs(e.ns).Patch(context.Background(), name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})
	return name
}

// describeShows waits for `kubectl describe job` (the built kubectl) to list
// Events from the agent with each of the reasons.
func (e *env) describeShows(job string, reasons ...string) string {
	e.t.Helper()
	var out string
	eventually(e.t, "kubectl describe job "+job+" to list the agent's Events "+strings.Join(reasons, ", "), func() bool {
		stdout, _, err := cluster.Kubectl(context.Background(), nil, "describe", "job", "-n", e.ns, job)
		if err != nil {
			return false
		}
		out = string(stdout)
		for _, r := range reasons {
			if !strings.Contains(out, r+"  ") || !strings.Contains(out, EventComponent) {
				return false
			}
		}
		return true
	})
	return out
}

func TestDescribeJobShowsTheAgentsDecisions(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-pods"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}}
	if _, err := cluster.Client.CoreV1().ResourceQuotas(e.ns).Create(context.Background(), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the quota to be counted", func() bool {
		q, err := cluster.Client.CoreV1().ResourceQuotas(e.ns).Get(context.Background(), "no-pods", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil
	})
	run := e.schedule(imageRun(t, testbed.ImageRun, nil))
	e.start("", func(c *Config) { managed(false)(c); c.Manage.Pending.QuotaTimeout = 4 * time.Second })
	job := e.holdJob(run.ID)
	e.waitState(run.ID, "Failed")
	out := e.describeShows(job, EventCreated, EventWaiting, EventGaveUp, EventDeleted)
	if !strings.Contains(out, "exceeded quota") {
		t.Errorf("the Waiting Event does not say why:\n%s", out)
	}
}

func TestDescribeJobShowsAReportedFailure(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageExit1, nil))
	e.start("", managed(false))
	e.waitFailed(run.ID, "exit code 1")
	job := e.jobsFor(run.ID)[0]
	out := e.describeShows(job.Name, EventCreated, EventFailureReported)
	if !strings.Contains(out, "terminated with exit code 1") {
		t.Errorf("the FailureReported Event does not say how the flow failed:\n%s", out)
	}
	// The failed container's output is saved into the run log, or why not.
	r, _ := e.em.FlowRun(run.ID)
	if !contains(logsAt(r, "INFO"), `of container "flow" of pod `) {
		t.Errorf("no line about the failed container's output: %q", logsAt(r, "INFO"))
	}
}

// TestEvidenceIsSavedBeforeTheJobGoes reads a failed container's last lines
// through the pods/log API (the fake clientset serves "fake logs") and writes
// them into the run log, with the line count asked for.
func TestEvidenceIsSavedBeforeTheJobGoes(t *testing.T) {
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em.Handler())
	defer srv.Close()
	run, err := em.AddFlowRun(emulator.FlowRunSpec{})
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etl-abcd-xyz", Namespace: "flows"}})
	a, err := New(Config{Prefect: newClient(srv.URL, ""), Kube: kube, Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	m := a.newManager()
	m.cfg.FailedPodLogLines = 7
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "etl-abcd", Namespace: "flows"}}
	m.saveEvidence(context.Background(), job, run.ID, problem{failedPod: "etl-abcd-xyz", failedContainer: "flow"})
	got, _ := em.FlowRun(run.ID)
	want := "Last 7 lines of the output of container \"flow\" of pod etl-abcd-xyz:\nfake logs"
	if len(got.Logs) != 1 || got.Logs[0].Message != want || got.Logs[0].Level != prefect.LevelInfo || got.Logs[0].Name != "agent" {
		t.Fatalf("run log %+v, want one INFO line %q", got.Logs, want)
	}
	readLog := false
	for _, act := range kube.Actions() {
		readLog = readLog || (act.GetVerb() == "get" && act.GetSubresource() == "log")
	}
	if !readLog {
		t.Fatalf("the agent did not read pods/log: %v", kube.Actions())
	}
	m.cfg.FailedPodLogLines = -1
	m.saveEvidence(context.Background(), job, run.ID, problem{failedPod: "etl-abcd-xyz", failedContainer: "flow"})
	if got, _ := em.FlowRun(run.ID); len(got.Logs) != 1 {
		t.Fatalf("with --failed-pod-log-lines 0 the agent still saved output: %+v", got.Logs)
	}
}
