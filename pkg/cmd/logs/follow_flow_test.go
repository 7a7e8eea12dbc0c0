package logs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// TestLogsFollowsARealFlowUntilItFinishes runs a three-task flow with
// Prefect's own runner in the Job the agent creates, follows it with
// `logs -f` from the moment the Job exists (before its pod runs), and
// expects the command to print the flow's output from the pod and the
// runner's lines from Prefect, and to return once the run is finished.
func TestLogsFollowsARealFlowUntilItFinishes(t *testing.T) {
	cluster.RequireFlowRunner(t)
	ns := cluster.Namespace(t)
	em, api := prefectServer(t)
	serialized, err := testbed.SerializedFlow("testflows.three_tasks")
	if err != nil {
		t.Fatal(err)
	}
	flow, err := em.RegisterFlow(serialized, "")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := json.Marshal(map[string]any{"type": "KubernetesRun", "image": testbed.ImagePrefect})
	if err != nil {
		t.Fatal(err)
	}
	run, err := em.CreateFlowRun(emulator.RunOfFlow{FlowID: flow.ID, Labels: []string{}, RunConfig: rc})
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, ns, api)

	// Follow from the moment the Job exists: its pod, not there yet or
	// pending, is picked up once it runs.
	testbed.Eventually(t, "the run's Job", func() bool {
		list, err := cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.ID})
		return err == nil && len(list.Items) == 1
	})
	if r, _ := em.FlowRun(run.ID); prefect.Finished(r.State) {
		t.Fatalf("the run was %s before logs -f started", r.State)
	}
	out, errOut := &testbed.SyncBuffer{}, &testbed.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runLogsTo(context.Background(), out, errOut, cluster.Client, cluster.Kubeconfig, api, "-n", ns, "-f", run.ID)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("logs -f: %v (%s)", err, errOut.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("logs -f did not return within 3 minutes; the run is %s; it printed:\n%s", runState(em, run.ID), out.String())
	}
	if state := runState(em, run.ID); state != "Success" {
		t.Fatalf("logs -f returned while the run is %s", state)
	}
	pods, err := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.ID})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the run's pods: %v %v", pods, err)
	}
	pod := pods.Items[0].Name
	var fromPod, fromPrefect, success bool
	for _, l := range strings.Split(out.String(), "\n") {
		fromPod = fromPod || (strings.Contains(l, " [pod/"+pod+"/flow] ") && strings.Contains(l, "extract: read 3 rows"))
		fromPrefect = fromPrefect || (strings.Contains(l, " [prefect] INFO ") && strings.HasSuffix(l, "extract: read 3 rows"))
		success = success || (strings.Contains(l, " [prefect] INFO ") && strings.HasSuffix(l, "Flow run SUCCESS: all reference tasks succeeded"))
	}
	if !fromPod || !fromPrefect || !success {
		t.Errorf("logs -f printed (the task's line from the pod %v and from Prefect %v, the run's end %v):\n%s%s", fromPod, fromPrefect, success, out.String(), errOut.String())
	}
}

func runState(em *emulator.Emulator, id string) string {
	r, _ := em.FlowRun(id)
	return r.State
}
