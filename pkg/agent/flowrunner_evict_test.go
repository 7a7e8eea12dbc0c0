package agent

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

// TestRealRunnerEvictedMidTask evicts the pod of a flow in the middle of a
// task. Prefect's task runner does not run a task whose task run is Running,
// so the dead attempt's Running task run must be handed back before the
// fresh attempt: then exactly one fresh attempt (the Job's replacement pod)
// runs the rest of the flow and ends it Success.
func TestRealRunnerEvictedMidTask(t *testing.T) {
	cluster.RequireFlowRunner(t)
	t.Parallel()
	e := newEnv(t, emulator.Config{})
	run := e.runFlow("testflows.slow_once", map[string]any{"env": map[string]string{"TESTFLOWS_MARKER_DIR": t.TempDir()}}, "")
	e.start("", managed(false))
	e.waitTaskRun(run.ID, "nap_once-1", "Running")
	pod := e.runningPod(run.ID)
	if err := cluster.Client.CoreV1().Pods(e.ns).EvictV1(context.Background(), &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: e.ns}}); err != nil {
		t.Fatal(err)
	}
	got := e.waitFinal(run.ID, "Success", "Failed", "Cancelled")
	if got.State != "Success" {
		t.Fatalf("the evicted run ended %s, want Success from its fresh attempt; log:\n%s", got.State, runLog(got))
	}
	if trs := taskRunStates(e, got); trs["before-1"] != "Success" || trs["nap_once-1"] != "Success" || trs["after-1"] != "Success" {
		t.Errorf("task runs %v, want all Success", trs)
	}
	e.waitLog(run.ID, "INFO", "nap_once: a fresh attempt, no nap")
	// The runner reports Success before its process exits: wait for the pod.
	var pods *corev1.PodList
	finished := 0
	testbed.Eventually(t, "the fresh attempt's pod to succeed", func() bool {
		var err error
		pods, err = cluster.Client.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "prefect.io/flow_run_id=" + run.ID})
		if err != nil {
			t.Fatal(err)
		}
		finished = 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodSucceeded {
				finished++
			}
		}
		return finished > 0
	})
	for _, p := range pods.Items {
		if p.Name == pod.Name {
			t.Errorf("the evicted pod %s is still there", p.Name)
		}
	}
	// kubectl logs serves the fresh attempt's output (kwok reads the
	// executor's log file).
	for _, p := range pods.Items {
		out, errOut, err := cluster.Kubectl(context.Background(), nil, "logs", "-n", e.ns, p.Name, "-c", "flow")
		if err != nil || !strings.Contains(string(out), "nap_once: a fresh attempt, no nap") {
			t.Errorf("kubectl logs %s: %v %s\n%s", p.Name, err, errOut, out)
		}
	}
	if !contains(logsAt(got, "INFO"), "Handed back 1 task run(s) that were Running in the disrupted pod") {
		t.Errorf("no line about the handed-back task run:\n%s", runLog(got))
	}
	if len(pods.Items) != 1 || finished != 1 || len(e.jobsFor(run.ID)) != 1 {
		t.Errorf("fresh attempts: %d pods (%d Succeeded), %d Jobs; want exactly one pod that succeeded, in the one Job", len(pods.Items), finished, len(e.jobsFor(run.ID)))
	}
}
