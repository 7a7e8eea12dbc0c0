package logs

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

var cluster *testbed.Cluster

func TestMain(m *testing.M) { os.Exit(testbed.Run(m, &cluster)) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// prefectWith starts an emulator holding one run named brave-fox.
func prefectWith(t *testing.T) (*emulator.Emulator, string, string) {
	t.Helper()
	em, err := emulator.New(emulator.Config{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em.Handler())
	t.Cleanup(srv.Close)
	run, err := em.AddFlowRun(emulator.FlowRunSpec{Name: "brave-fox"})
	if err != nil {
		t.Fatal(err)
	}
	return em, srv.URL, run.ID
}

func writeLine(t *testing.T, api, runID, name, level, msg string, at time.Time) {
	t.Helper()
	c := prefect.NewClient(prefect.Config{API: api})
	if err := c.WriteRunLogs(context.Background(), prefect.RunLog{FlowRunID: runID, Name: name, Level: level, Message: msg, Time: at}); err != nil {
		t.Fatal(err)
	}
}

// runLogs runs the command with a client of the test's choice.
func runLogs(t *testing.T, client kubernetes.Interface, kubeconfig, api string, args ...string) (string, string, error) {
	t.Helper()
	out, errOut := &testbed.SyncBuffer{}, &testbed.SyncBuffer{}
	err := runLogsTo(context.Background(), out, errOut, client, kubeconfig, api, args...)
	return out.String(), errOut.String(), err
}

// runLogsTo runs the command writing to out and errOut, which a test may
// read while the command runs.
func runLogsTo(ctx context.Context, out, errOut io.Writer, client kubernetes.Interface, kubeconfig, api string, args ...string) error {
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut}
	configFlags := genericclioptions.NewConfigFlags(false)
	o := NewOptions(configFlags, streams)
	o.client = client
	o.PollInterval = 100 * time.Millisecond
	cmd := newCmdLogs(o)
	configFlags.AddFlags(cmd.PersistentFlags())
	base := []string{"--api", api, "--backend", "server", "--agent-name", "agent"}
	if kubeconfig != "" {
		base = append(base, "--kubeconfig", kubeconfig)
	}
	cmd.SetArgs(append(base, args...))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd.ExecuteContext(ctx)
}

// TestLogsInterleavesBothSources reads the Prefect log and the container's
// output (the fake clientset serves "fake logs", without a timestamp, so the
// line takes its pod's creation time) and orders them by time.
func TestLogsInterleavesBothSources(t *testing.T) {
	_, api, runID := prefectWith(t)
	writeLine(t, api, runID, "agent", "INFO", "Submitted for execution: Job etl-abcd", t0.Add(time.Second))
	writeLine(t, api, runID, "agent", "ERROR", `Pod etl-abcd-x1 failed: container "flow" terminated with exit code 1 (Error)`, t0.Add(3*time.Second))
	labels := map[string]string{manifest.LabelFlowRunID: runID}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "etl-abcd", Namespace: "flows", UID: types.UID("job-1"), Labels: labels, CreationTimestamp: metav1.NewTime(t0)}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etl-abcd-x1", Namespace: "flows", Labels: labels, CreationTimestamp: metav1.NewTime(t0.Add(2 * time.Second)),
		OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Name: "etl-abcd", UID: "job-1"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow"}}}}
	kube := fake.NewClientset(job, pod)

	for _, target := range []string{"brave-fox", "etl-abcd", runID} {
		out, errOut, err := runLogs(t, kube, "", api, "-n", "flows", target)
		if err != nil {
			t.Fatalf("logs %s: %v (%s)", target, err, errOut)
		}
		want := `2026-01-01T00:00:01Z [prefect] INFO agent: Submitted for execution: Job etl-abcd
2026-01-01T00:00:02Z [pod/etl-abcd-x1/flow] fake logs
2026-01-01T00:00:03Z [prefect] ERROR agent: Pod etl-abcd-x1 failed: container "flow" terminated with exit code 1 (Error)
`
		if out != want {
			t.Errorf("logs %s:\n--- got\n%s--- want\n%s", target, out, want)
		}
	}
	out, _, _ := runLogs(t, kube, "", api, "-n", "flows", "brave-fox", "--prefect-only", "--tail", "1")
	if out != "2026-01-01T00:00:03Z [prefect] ERROR agent: Pod etl-abcd-x1 failed: container \"flow\" terminated with exit code 1 (Error)\n" {
		t.Errorf("--prefect-only --tail 1:\n%s", out)
	}
	out, _, _ = runLogs(t, kube, "", api, "-n", "flows", "etl-abcd", "--pod-only")
	if out != "2026-01-01T00:00:02Z [pod/etl-abcd-x1/flow] fake logs\n" {
		t.Errorf("--pod-only:\n%s", out)
	}
	// The Job is gone: Prefect's lines remain.
	if err := kube.BatchV1().Jobs("flows").Delete(context.Background(), "etl-abcd", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	out, _, err := runLogs(t, kube, "", api, "-n", "flows", "brave-fox")
	if err != nil || strings.Count(out, "\n") != 2 || strings.Contains(out, "[pod/") {
		t.Errorf("after the Job is gone: %v\n%s", err, out)
	}
	for args, want := range map[string]string{
		"--prefect-only --pod-only brave-fox": "exclude each other",
		"--attempt 2 --all-attempts x":        "exclude each other",
		"no-such-run":                         `no flow run named "no-such-run"`,
	} {
		if _, _, err := runLogs(t, kube, "", api, append([]string{"-n", "flows"}, strings.Fields(args)...)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// TestLogsFollowEndsWhenTheRunFinishes follows a running flow's run against
// the real control plane: a line written while it follows is printed, and
// the command returns once Prefect shows the run finished.
func TestLogsFollowEndsWhenTheRunFinishes(t *testing.T) {
	ns := cluster.Namespace(t)
	em, api, runID := prefectWith(t)
	if _, err := em.SetFlowRunState(runID, "Running", "running"); err != nil {
		t.Fatal(err)
	}
	writeLine(t, api, runID, "prefect.CloudFlowRunner", "INFO", "Beginning Flow run for 'etl'", t0.Add(time.Second))
	out, errOut := &testbed.SyncBuffer{}, &testbed.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runLogsTo(context.Background(), out, errOut, cluster.Client, cluster.Kubeconfig, api, "-n", ns, "-f", "brave-fox")
	}()
	testbed.Eventually(t, "-f to print the run's log so far", func() bool { return strings.Contains(out.String(), "Beginning Flow run for 'etl'") })
	writeLine(t, api, runID, "prefect.CloudFlowRunner", "INFO", "Task 'extract': Finished task run for task with final state: 'Success'", t0.Add(3*time.Second))
	// A line written while the run is Running is followed: -f printed it,
	// so it had not returned.
	testbed.Eventually(t, "-f to print the line written while it follows", func() bool {
		return strings.Contains(out.String(), "Task 'extract': Finished task run")
	})
	select {
	case err := <-done:
		t.Fatalf("-f returned while the run was Running: %v\n%s", err, out.String())
	default:
	}
	writeLine(t, api, runID, "prefect.CloudFlowRunner", "INFO", "Flow run SUCCESS: all reference tasks succeeded", t0.Add(5*time.Second))
	if _, err := em.SetFlowRunState(runID, "Success", "done"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v (%s)", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("-f did not end within 10 s of the run finishing; it printed:\n%s", out.String())
	}
	want := `2026-01-01T00:00:01Z [prefect] INFO prefect.CloudFlowRunner: Beginning Flow run for 'etl'
2026-01-01T00:00:03Z [prefect] INFO prefect.CloudFlowRunner: Task 'extract': Finished task run for task with final state: 'Success'
2026-01-01T00:00:05Z [prefect] INFO prefect.CloudFlowRunner: Flow run SUCCESS: all reference tasks succeeded
`
	if got := out.String(); got != want {
		t.Errorf("-f printed:\n--- got\n%s--- want\n%s", got, want)
	}
}
