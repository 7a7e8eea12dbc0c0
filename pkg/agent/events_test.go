package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

// holdJob keeps a run's Job describable after the agent deletes it: a
// finalizer of the test's own, removed when the test ends.
func (e *env) holdJob(runID string) string {
	e.t.Helper()
	var name string
	eventually(e.t, "the Job of "+runID+" to exist", func() bool {
		found := e.jobsFor(runID)
		if len(found) == 0 {
			return false
		}
		name = found[0].Name
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
			if !strings.Contains(out, r+"  ") || !strings.Contains(out, jobs.EventComponent) {
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
	out := e.describeShows(job, jobs.EventCreated, jobs.EventWaiting, jobs.EventGaveUp, jobs.EventDeleted)
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
	out := e.describeShows(job.Name, jobs.EventCreated, jobs.EventFailureReported)
	if !strings.Contains(out, "terminated with exit code 1") {
		t.Errorf("the FailureReported Event does not say how the flow failed:\n%s", out)
	}
	// The failed container's output is saved into the run log, or why not.
	r, _ := e.em.FlowRun(run.ID)
	if !contains(logsAt(r, "INFO"), `of container "flow" of pod `) {
		t.Errorf("no line about the failed container's output: %q", logsAt(r, "INFO"))
	}
}
