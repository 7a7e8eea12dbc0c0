package jobs

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/runlog"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// testController is a Job controller writing to Prefect with client under
// the name "agent", on kube, not started.
func testController(client *prefect.Client, kube kubernetes.Interface, cfg Config) *Controller {
	return NewController(Dependencies{Kube: kube, Prefect: client, Runs: runlog.New(client, "agent", nil)}, cfg)
}

func newClient(api, key string) *prefect.Client {
	return prefect.NewClient(prefect.Config{API: api, APIKey: key, Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
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
	m := testController(newClient(srv.URL, ""), kube, Config{FailedPodLogLines: 7})
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
