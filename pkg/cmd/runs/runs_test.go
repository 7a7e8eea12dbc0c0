package runs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

var cluster *testbed.Cluster

func TestMain(m *testing.M) { os.Exit(testbed.Run(m, &cluster)) }

// t0 is the emulator's fixed clock: every state is set at t0, so AGE is
// fixed too when the command's clock reads t0+10h.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const agentName = "test-agent"

// world is one test's namespace, Prefect emulator and agent registration.
type world struct {
	t      *testing.T
	ns     string
	em     *emulator.Emulator
	api    string
	client *prefect.Client
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ns := cluster.Namespace(t)
	em, err := emulator.New(emulator.Config{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em.Handler())
	t.Cleanup(srv.Close)
	client := prefect.NewClient(prefect.Config{API: srv.URL})
	if _, err := client.RegisterAgent(context.Background(), em.DefaultTenant().ID, agentName, "KubernetesAgent", nil); err != nil {
		t.Fatal(err)
	}
	return &world{t: t, ns: ns, em: em, api: srv.URL, client: client}
}

// run adds a flow run and takes it through states: "submitted" marks it
// Submitted by the agent (as the agent does), any other is set by hand.
func (w *world) run(name, flow string, states ...string) string {
	w.t.Helper()
	r, err := w.em.AddFlowRun(emulator.FlowRunSpec{Name: name, Flow: emulator.Flow{Name: flow}})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, s := range states {
		if s == "submitted" {
			cur, _ := w.em.FlowRun(r.ID)
			by := prefect.Submission{Agent: agentName, Namespace: w.ns, Token: name}
			if err := w.client.SetFlowRunState(context.Background(), r.ID, nil, prefect.SubmittedState("Submitted for execution", cur.SerializedState, by)); err != nil {
				w.t.Fatal(err)
			}
			continue
		}
		if _, err := w.em.SetFlowRunState(r.ID, s, "set by the test"); err != nil {
			w.t.Fatal(err)
		}
	}
	return r.ID
}

const node = "node-000000"

// job creates a Job as the agent makes them for a run, pinned to one node.
func (w *world) job(name, runID, runName, flow, image string) {
	w.t.Helper()
	w.jobOf(agent.AgentIdentity(agentName, nil), name, runID, runName, flow, image)
}

// jobOf creates a Job as the agent of an identity makes them (none: as
// agents made them before they labelled their Jobs).
func (w *world) jobOf(owner, name, runID, runName, flow, image string) {
	w.t.Helper()
	labels := map[string]string{manifest.LabelIdentifier: name[len(name)-4:], manifest.LabelFlowRunID: runID, manifest.LabelAgent: owner}
	if owner == "" {
		delete(labels, manifest.LabelAgent) // made before Jobs carried their agent
	}
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels,
			Annotations: map[string]string{manifest.AnnotationFlowName: flow, manifest.AnnotationFlowRunName: runName}},
		Spec: batchv1.JobSpec{BackoffLimit: new(int32), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, NodeSelector: map[string]string{"kubernetes.io/hostname": node},
				Containers: []corev1.Container{{Name: "flow", Image: image}}},
		}},
	}
	if _, err := cluster.Client.BatchV1().Jobs(w.ns).Create(context.Background(), j, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

// runCmd runs `kubectl prefect runs` against the world with a fixed clock.
func (w *world) runCmd(args ...string) (stdout, stderr string, err error) {
	w.t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	configFlags := genericclioptions.NewConfigFlags(false)
	o := NewOptions(configFlags, streams)
	o.Now = func() time.Time { return t0.Add(10 * time.Hour) }
	cmd := newCmdRuns(o)
	configFlags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs(append([]string{"--kubeconfig", cluster.Kubeconfig, "-n", w.ns, "--api", w.api, "--backend", "server", "--agent-name", agentName}, args...))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func (w *world) mustRun(args ...string) string {
	w.t.Helper()
	out, _, err := w.runCmd(args...)
	if err != nil {
		w.t.Fatalf("runs %v: %v", args, err)
	}
	return out
}

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n--- got\n%s--- want\n%s", what, got, want)
	}
}

// podPhases waits for the namespace's pods to reach the phases, by Job.
func (w *world) podPhases(want map[string]corev1.PodPhase) {
	w.t.Helper()
	testbed.Eventually(w.t, fmt.Sprintf("the pods to reach %v", want), func() bool {
		pods, err := cluster.Client.CoreV1().Pods(w.ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		got := map[string]corev1.PodPhase{}
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				got[p.Labels["job-name"]] = p.Status.Phase
			}
		}
		for job, phase := range want {
			if got[job] != phase {
				return false
			}
		}
		return true
	})
}

// TestRunsShowsEachDrift builds one run per drift kind and a healthy one.
func TestRunsShowsEachDrift(t *testing.T) {
	w := newWorld(t)
	healthy := w.run("healthy-run", "etl", "submitted", "Running")
	w.job("etl-aaaa", healthy, "healthy-run", "etl", testbed.ImageRun)
	lost := w.run("lost-pod", "etl", "submitted", "Running")
	w.job("etl-bbbb", lost, "lost-pod", "etl", "example/flow:1")
	w.run("no-job", "report", "submitted")
	zombie := w.run("zombie-pod", "report", "submitted", "Running", "Success")
	w.job("report-cccc", zombie, "zombie-pod", "report", testbed.ImageRun)
	crashed := w.run("crashed", "etl", "submitted", "Running")
	w.job("etl-dddd", crashed, "crashed", "etl", testbed.ImageExit1)
	w.run("running-gone", "report", "submitted", "Running")
	w.run("someone-elses", "report") // Scheduled, no agent: not this agent's
	w.podPhases(map[string]corev1.PodPhase{"etl-aaaa": corev1.PodRunning, "etl-bbbb": corev1.PodSucceeded, "report-cccc": corev1.PodRunning, "etl-dddd": corev1.PodFailed})
	testbed.Eventually(t, "the Jobs' conditions", func() bool {
		out := w.mustRun("-o", "jsonpath={range .items[*]}{.metadata.name}={.status.drift}{\"\\n\"}{end}")
		return strings.Contains(out, "lost-pod=[\"RunningWithoutPod\"]") && strings.Contains(out, "crashed=[\"JobFailedRunRunning\"]")
	})

	expect(t, "table", w.mustRun(), `NAME           FLOW     STATE       AGE   JOB           POD               NODE          ATTEMPTS   DRIFT
crashed        etl      Running     10h   etl-dddd      Failed (exit 1)   node-000000   1          JobFailedRunRunning
healthy-run    etl      Running     10h   etl-aaaa      Running           node-000000   1          <none>
lost-pod       etl      Running     10h   etl-bbbb      Succeeded         node-000000   1          RunningWithoutPod
no-job         report   Submitted   10h   <none>        <none>            <none>        0          SubmittedWithoutJob
running-gone   report   Running     10h   <none>        <none>            <none>        0          RunningWithoutPod
zombie-pod     report   Success     10h   report-cccc   Running           node-000000   1          FinishedPodRunning
`)
	expect(t, "--state Running --flow etl --no-headers", w.mustRun("--state", "Running", "--flow", "etl", "--no-headers"), `crashed       etl   Running   10h   etl-dddd   Failed (exit 1)   node-000000   1     JobFailedRunRunning
healthy-run   etl   Running   10h   etl-aaaa   Running           node-000000   1     <none>
lost-pod      etl   Running   10h   etl-bbbb   Succeeded         node-000000   1     RunningWithoutPod
`)
	expect(t, "-o name with RUN arguments (name and id)", w.mustRun("-o", "name", "no-job", zombie), "flowrun.kubectl-prefect.io/no-job\nflowrun.kubectl-prefect.io/zombie-pod\n")
	expect(t, "-o custom-columns --sort-by", w.mustRun("-o", "custom-columns=RUN:.metadata.name,JOB:.status.job", "--sort-by", "{.status.job}", "-l", "prefect.io/identifier"), `RUN           JOB
healthy-run   etl-aaaa
lost-pod      etl-bbbb
crashed       etl-dddd
zombie-pod    report-cccc
`)
	wide := w.mustRun("-o", "wide", "healthy-run")
	if !strings.Contains(wide, "RUN ID") || !strings.Contains(wide, healthy) || !strings.Contains(wide, "etl-aaaa-") {
		t.Errorf("-o wide lacks the run id or the pod name:\n%s", wide)
	}
	var list struct {
		Kind  string
		Items []struct {
			APIVersion, Kind string
			Metadata         struct{ Name, Namespace string }
			Spec             struct{ ID string }
			Status           struct {
				State string
				Drift []string
			}
		}
	}
	if err := json.Unmarshal([]byte(w.mustRun("-o", "json")), &list); err != nil || list.Kind != "List" || len(list.Items) != 6 {
		t.Fatalf("-o json: %v %+v", err, list)
	}
	for _, it := range list.Items {
		if it.APIVersion != APIVersion || it.Kind != Kind || it.Metadata.Namespace != w.ns || it.Spec.ID == "" {
			t.Errorf("-o json item %+v", it)
		}
	}
	// -A adds the NAMESPACE column.
	all := w.mustRun("-A", "--no-headers", "crashed")
	if !strings.HasPrefix(all, w.ns+"   crashed ") {
		t.Errorf("-A:\n%s", all)
	}
}

// TestRunsNoFalseDrift lists 200 healthy runs (100 running, 100 finished
// with their Job complete) paged by 50 Jobs: no drift, and two Prefect
// requests: one for the agent's runs (the 100 running), one for the page of
// the others.
func TestRunsNoFalseDrift(t *testing.T) {
	w := newWorld(t)
	want := map[string]corev1.PodPhase{}
	for i := 0; i < 200; i++ {
		name := fmt.Sprintf("run-%03d", i)
		job := fmt.Sprintf("flow-%04d", i)
		if i%2 == 0 {
			w.job(job, w.run(name, "flow", "submitted", "Running"), name, "flow", testbed.ImageRun)
			want[job] = corev1.PodRunning
		} else {
			w.job(job, w.run(name, "flow", "submitted", "Running", "Success"), name, "flow", "example/flow:1")
			want[job] = corev1.PodSucceeded
		}
	}
	w.podPhases(want)
	before := w.em.Requests()["RunsOverview"]
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct{ Drift []string }
		}
	}
	out := w.mustRun("-o", "json", "--chunk-size", "50")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 200 {
		t.Fatalf("%d runs listed, want 200", len(list.Items))
	}
	for _, it := range list.Items {
		if len(it.Status.Drift) > 0 {
			t.Errorf("run %s shows drift %v", it.Metadata.Name, it.Status.Drift)
		}
	}
	if n := w.em.Requests()["RunsOverview"] - before; n != 2 {
		t.Errorf("%d Prefect requests for 200 runs, want 2 (the agent's runs, then one page of %d for the finished ones)", n, RunsPage)
	}
}

// TestRunsKeepsToTheNamespacesAgent: agents of one name and labels in two
// namespaces share one Prefect registration. `runs -n A` lists only A's
// runs: the Jobs carrying the agent's identity (not another agent's Job in
// A, nor B's Jobs of the same identity), and, of the runs without a Job,
// those whose latest Submitted mark A's agent made (Submitted, and Running
// since), with their drift; B's likewise.
func TestRunsKeepsToTheNamespacesAgent(t *testing.T) {
	a := newWorld(t)
	b := &world{t: t, ns: cluster.Namespace(t), em: a.em, api: a.api, client: a.client}
	a.job("etl-a001", a.run("a-running", "etl", "submitted", "Running"), "a-running", "etl", testbed.ImageRun)
	a.run("a-no-job", "etl", "submitted")
	a.run("a-gone", "etl", "submitted", "Running")
	b.job("etl-b001", b.run("b-running", "etl", "submitted", "Running"), "b-running", "etl", testbed.ImageRun)
	b.run("b-no-job", "etl", "submitted")
	b.run("b-gone", "etl", "submitted", "Running")
	other := a.run("other-agents", "etl", "Running")
	a.jobOf(agent.AgentIdentity(agentName, []string{"gpu"}), "etl-c001", other, "other-agents", "etl", testbed.ImageRun)
	a.podPhases(map[string]corev1.PodPhase{"etl-a001": corev1.PodRunning, "etl-c001": corev1.PodRunning})
	b.podPhases(map[string]corev1.PodPhase{"etl-b001": corev1.PodRunning})

	expect(t, "runs -n A", a.mustRun(), `NAME        FLOW   STATE       AGE   JOB        POD       NODE          ATTEMPTS   DRIFT
a-gone      etl    Running     10h   <none>     <none>    <none>        0          RunningWithoutPod
a-no-job    etl    Submitted   10h   <none>     <none>    <none>        0          SubmittedWithoutJob
a-running   etl    Running     10h   etl-a001   Running   node-000000   1          <none>
`)
	expect(t, "runs -n B", b.mustRun(), `NAME        FLOW   STATE       AGE   JOB        POD       NODE          ATTEMPTS   DRIFT
b-gone      etl    Running     10h   <none>     <none>    <none>        0          RunningWithoutPod
b-no-job    etl    Submitted   10h   <none>     <none>    <none>        0          SubmittedWithoutJob
b-running   etl    Running     10h   etl-b001   Running   node-000000   1          <none>
`)
	// The other agent (same name, other labels: another registration) has
	// its Job listed, and none of the first agent's runs.
	expect(t, "runs -n A --agent-label gpu", a.mustRun("--agent-label", "gpu", "--no-headers"),
		"other-agents   etl   Running   10h   etl-c001   Running   node-000000   1     <none>\n")
	// Across namespaces, each run once, in its own namespace.
	all := a.mustRun("-A", "-o", "custom-columns=NAMESPACE:.metadata.namespace,RUN:.metadata.name,DRIFT:.status.drift",
		"a-gone", "a-no-job", "a-running", "b-gone", "b-no-job", "b-running", "other-agents")
	block := func(ns, prefix string) string {
		return fmt.Sprintf("%[1]s %[2]s-gone [\"RunningWithoutPod\"]\n%[1]s %[2]s-no-job [\"SubmittedWithoutJob\"]\n%[1]s %[2]s-running []\n", ns, prefix)
	}
	want := "NAMESPACE RUN DRIFT\n" + block(a.ns, "a") + block(b.ns, "b")
	if b.ns < a.ns {
		want = "NAMESPACE RUN DRIFT\n" + block(b.ns, "b") + block(a.ns, "a")
	}
	if strings.Join(strings.Fields(all), " ") != strings.Join(strings.Fields(want), " ") {
		t.Errorf("runs -A (spaces aside):\n--- got\n%s--- want\n%s", all, want)
	}
}

func TestRunsEmptyAndErrors(t *testing.T) {
	w := newWorld(t)
	out, errOut, err := w.runCmd()
	if err != nil || out != "" || errOut != "No resources found in "+w.ns+" namespace.\n" {
		t.Fatalf("empty: %q %q %v", out, errOut, err)
	}
	if _, _, err := w.runCmd("--state", "running"); err == nil || !strings.Contains(err.Error(), `--state "running"`) {
		t.Errorf("--state running: %v", err)
	}
}

// TestRunsWatchPrintsChanges: -w prints a run again once its state changes.
func TestRunsWatchPrintsChanges(t *testing.T) {
	w := newWorld(t)
	id := w.run("watched", "etl", "submitted")
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	out := &testbed.SyncBuffer{}
	streams.Out = out
	configFlags := genericclioptions.NewConfigFlags(false)
	o := NewOptions(configFlags, streams)
	o.Now = func() time.Time { return t0.Add(10 * time.Hour) }
	cmd := newCmdRuns(o)
	configFlags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs([]string{"--kubeconfig", cluster.Kubeconfig, "-n", w.ns, "--api", w.api, "--backend", "server", "--agent-name", agentName,
		"-w", "--watch-interval", "1s", "--no-headers", "-o", "custom-columns=RUN:.metadata.name,STATE:.status.state"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	testbed.Eventually(t, "the first listing", func() bool { return strings.Contains(out.String(), "Submitted") })
	if _, err := w.em.SetFlowRunState(id, "Running", "the flow started"); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, "the change to be printed", func() bool { return strings.Contains(out.String(), "watched   Running") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "watched   Submitted\nwatched   Running\n" {
		t.Fatalf("-w printed:\n%s", got)
	}
}

// TestRunsShowsThePodsOfAnAdoptedJob: a Job made before the agent labelled
// its Jobs with its identity is labelled when the agent adopts it, but its
// pods, made before, keep their labels. `runs` still shows its pod, and no
// drift.
func TestRunsShowsThePodsOfAnAdoptedJob(t *testing.T) {
	w := newWorld(t)
	id := w.run("adopted", "etl", "submitted", "Running")
	w.jobOf("", "etl-eeee", id, "adopted", "etl", testbed.ImageRun)
	w.podPhases(map[string]corev1.PodPhase{"etl-eeee": corev1.PodRunning})
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, manifest.LabelAgent, agent.AgentIdentity(agentName, nil))
	if _, err := cluster.Client.BatchV1().Jobs(w.ns).Patch(context.Background(), "etl-eeee", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	got := w.mustRun("--no-headers")
	if !regexp.MustCompile(`(?m)^adopted +etl +Running +\S+ +etl-eeee +Running +node-000000 +1 +<none>$`).MatchString(got) {
		t.Errorf("the adopted Job's row does not show its running pod without drift:\n%s", got)
	}
}
