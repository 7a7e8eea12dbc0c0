package logs

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// TestLogsShowAPodThatDiedBeforePrefectStarted runs the agent against the
// real control plane on a run whose image cannot import Prefect: the flow
// container prints a line and Python's traceback, and exits 1 before
// Prefect starts, so nothing of it reaches the run's log by itself. The
// agent reports the failure (with the container's termination message) and
// saves the container's last lines into the run log. `logs RUN` shows the
// container's output while the Job exists, and the saved lines from
// Prefect once the Job and its pod are gone.
func TestLogsShowAPodThatDiedBeforePrefectStarted(t *testing.T) {
	cluster.RequireFlowRunner(t)
	ns := cluster.Namespace(t)
	em, api := prefectServer(t)
	rc, err := json.Marshal(map[string]any{"type": "KubernetesRun", "image": testbed.ImageImportError,
		"job_template": map[string]any{"spec": map[string]any{"backoffLimit": 0, "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "flow", "terminationMessagePolicy": "FallbackToLogsOnError"}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := em.AddFlowRun(emulator.FlowRunSpec{Name: "broken-env", RunConfig: rc})
	if err != nil {
		t.Fatal(err)
	}

	startAgent(t, ns, api)

	// The agent fails the run and saves the container's output into its log.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, _ := em.FlowRun(run.ID)
		saved := false
		for _, l := range got.Logs {
			saved = saved || (l.Level == prefect.LevelInfo && strings.Contains(l.Message, testbed.BrokenPrefectMessage))
		}
		if got.State == "Failed" && saved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run is %s and its log does not hold the container's output:\n%+v", got.State, got.Logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pods, err := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.ID})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the run's pods: %v, %v", pods, err)
	}
	pod := pods.Items[0].Name
	source := "[pod/" + pod + "/flow] "

	// While the Job exists: the container's output, from the pod, after the
	// agent's submission and before its report of the failure, which
	// carries the termination message (the log's last lines).
	out, errOut, err := runLogs(t, cluster.Client, cluster.Kubeconfig, api, "-n", ns, "broken-env")
	if err != nil {
		t.Fatalf("logs: %v (%s)", err, errOut)
	}
	submitted := strings.Index(out, "[prefect] INFO agent: Submitted for execution: Job ")
	printed := strings.Index(out, source+"Loading the flow's Python environment\n")
	traceback := strings.Index(out, source+"Traceback (most recent call last):\n")
	missing := strings.Index(out, source+testbed.BrokenPrefectMessage+"\n")
	report := `[prefect] ERROR agent: Pod ` + pod + ` failed: container "flow" terminated with exit code 1 (Error): `
	failed := strings.Index(out, report)
	if submitted < 0 || printed < submitted || traceback < submitted || missing < traceback || failed < max(printed, missing) {
		t.Errorf("while the Job exists, logs does not show the container's output (from the pod) between the submission and the failure:\n%s", out)
	}
	checkSaved := func(when, out string) {
		t.Helper()
		if e := entry(out, report); !strings.Contains(e, "\n"+testbed.BrokenPrefectMessage) {
			t.Errorf("%s, the failure's line does not carry the termination message:\n%s", when, out)
		}
		e := entry(out, `[prefect] INFO agent: Last 50 lines of the output of container "flow" of pod `+pod+":\n")
		for _, want := range []string{"\nLoading the flow's Python environment", "\nTraceback (most recent call last):", "\n" + testbed.BrokenPrefectMessage} {
			if !strings.Contains(e, want) {
				t.Errorf("%s, the output saved in the run log lacks %q:\n%s", when, want, out)
			}
		}
	}
	checkSaved("while the Job exists", out)

	// The Job and its pod go: the output is still there, as the agent saved it.
	jobs, err := cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.ID})
	if err != nil || len(jobs.Items) != 1 {
		t.Fatalf("the run's Jobs: %v, %v", jobs, err)
	}
	background := metav1.DeletePropagationBackground
	if err := cluster.Client.BatchV1().Jobs(ns).Delete(context.Background(), jobs.Items[0].Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, "the Job's pod to be gone", func() bool {
		list, err := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.ID})
		return err == nil && len(list.Items) == 0
	})
	out, errOut, err = runLogs(t, cluster.Client, cluster.Kubeconfig, api, "-n", ns, "broken-env")
	if err != nil {
		t.Fatalf("logs after the Job was deleted: %v (%s)", err, errOut)
	}
	if strings.Contains(out, "[pod/") {
		t.Errorf("after the Job was deleted, logs still shows a pod's output:\n%s", out)
	}
	checkSaved("after the Job was deleted", out)
}

// entryStart is how a line of `logs` starts: its time.
var entryStart = regexp.MustCompile(`\n\d{4}-\d\d-\d\dT`)

// entry returns the line of out holding marker with the lines that continue
// it (a multi-line message), or "".
func entry(out, marker string) string {
	i := strings.Index(out, marker)
	if i < 0 {
		return ""
	}
	e := out[i:]
	if loc := entryStart.FindStringIndex(e); loc != nil {
		e = e[:loc[0]]
	}
	return e
}
