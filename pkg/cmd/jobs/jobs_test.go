package jobs

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

var cluster *testbed.Cluster

func TestMain(m *testing.M) { os.Exit(testbed.Run(m, &cluster)) }

const node = "node-000000"

// agentJob is a Job as the agent makes them, pinned to one node.
func agentJob(name, flow, run, runID, image string, cpu string) *batchv1.Job {
	labels := map[string]string{manifest.LabelIdentifier: name[len(name)-4:], manifest.LabelFlowRunID: runID, manifest.LabelFlowID: "f-" + flow, "scenario": "jobs-test"}
	if flow == "etl" { // created by this agent; the report Jobs by the 1.4.1 agent
		labels[manifest.LabelAgent] = "agent-3f9c0a1b2d"
	}
	c := corev1.Container{Name: "flow", Image: image}
	if cpu != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels,
			Annotations: map[string]string{manifest.AnnotationFlowName: flow, manifest.AnnotationFlowRunName: run}},
		Spec: batchv1.JobSpec{BackoffLimit: new(int32), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, NodeSelector: map[string]string{"kubernetes.io/hostname": node},
				Containers: []corev1.Container{c}},
		}},
	}
}

// fixture creates the agent's Jobs in a namespace and waits for their states.
func fixture(t *testing.T) (ns string, now time.Time) {
	t.Helper()
	ns = cluster.Namespace(t)
	ctx := context.Background()
	for _, j := range []*batchv1.Job{
		agentJob("etl-aaaa", "etl", "brave-fox", "run-a", testbed.ImageExit1, ""),
		agentJob("etl-bbbb", "etl", "calm-owl", "run-b", testbed.ImageImagePull, ""),
		agentJob("report-cccc", "report", "quick-elk", "run-c", testbed.ImageRun, ""),
		agentJob("report-dddd", "report", "slow-yak", "run-d", "example/big:1", testbed.UnschedulableCPU),
	} {
		if _, err := cluster.Client.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	other := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "not-prefect"}, Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
	if _, err := cluster.Client.BatchV1().Jobs(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"etl-aaaa": "Failed (BackoffLimitExceeded)", "etl-bbbb": "Pending (ImagePullBackOff)",
		"report-cccc": "Running", "report-dddd": "Pending (Unschedulable)",
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		o := &Options{client: cluster.Client, namespace: ns, selector: manifest.LabelIdentifier, ChunkSize: 500}
		jobs, _, err := o.list(ctx)
		if err != nil || len(jobs) != 4 {
			return false, err
		}
		pods, err := o.podsByJob(ctx)
		if err != nil {
			return false, err
		}
		for i := range jobs {
			if jobs[i].Status.StartTime == nil || jobStatus(&jobs[i], pods[ns+"/"+jobs[i].Name]) != want[jobs[i].Name] {
				return false, nil
			}
			// The clock is set 10 h after the last creation or start, so
			// that AGE and DURATION both read 10h whatever second the Job
			// controller started a Job in.
			for _, t := range []time.Time{jobs[i].CreationTimestamp.Time, jobs[i].Status.StartTime.Time} {
				if t.After(now) {
					now = t
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the fixture Jobs never reached their states: %v", err)
	}
	return ns, now.Add(10 * time.Hour)
}

// run runs `kubectl prefect jobs` with a fixed clock against the test cluster.
func run(t *testing.T, now time.Time, args ...string) (stdout, stderr string) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	configFlags := genericclioptions.NewConfigFlags(false)
	o := NewOptions(configFlags, streams)
	o.Now = func() time.Time { return now }
	cmd := newCmdJobs(o)
	configFlags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs(append([]string{"--kubeconfig", cluster.Kubeconfig}, args...))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		t.Fatalf("jobs %v: %v", args, err)
	}
	return out.String(), errOut.String()
}

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n--- got\n%s--- want\n%s", what, got, want)
	}
}

func TestJobsOutputs(t *testing.T) {
	ns, now := fixture(t)
	stdout, stderr := run(t, now, "-n", ns)
	expect(t, "table", stdout, `NAME          FLOW     FLOW RUN    STATUS                          COMPLETIONS   DURATION   AGE
etl-aaaa      etl      brave-fox   Failed (BackoffLimitExceeded)   0/1           10h        10h
etl-bbbb      etl      calm-owl    Pending (ImagePullBackOff)      0/1           10h        10h
report-cccc   report   quick-elk   Running                         0/1           10h        10h
report-dddd   report   slow-yak    Pending (Unschedulable)         0/1           10h        10h
`)
	expect(t, "table stderr", stderr, "")

	stdout, _ = run(t, now, "-n", ns, "-o", "wide")
	expect(t, "wide", stdout, `NAME          FLOW     FLOW RUN    STATUS                          COMPLETIONS   DURATION   AGE   FLOW RUN ID   IMAGE                             NODE          AGENT
etl-aaaa      etl      brave-fox   Failed (BackoffLimitExceeded)   0/1           10h        10h   run-a         testbed.invalid/fate:exit-1       node-000000   agent-3f9c0a1b2d
etl-bbbb      etl      calm-owl    Pending (ImagePullBackOff)      0/1           10h        10h   run-b         testbed.invalid/fate:image-pull   node-000000   agent-3f9c0a1b2d
report-cccc   report   quick-elk   Running                         0/1           10h        10h   run-c         testbed.invalid/fate:run          node-000000   <none>
report-dddd   report   slow-yak    Pending (Unschedulable)         0/1           10h        10h   run-d         example/big:1                     <none>        <none>
`)

	stdout, _ = run(t, now, "-A", "-l", "scenario=jobs-test", "--flow", "report", "--no-headers")
	expect(t, "-A --flow --no-headers", stdout, ns+`   report-cccc   report   quick-elk   Running                   0/1   10h   10h
`+ns+`   report-dddd   report   slow-yak    Pending (Unschedulable)   0/1   10h   10h
`)

	stdout, _ = run(t, now, "-A", "-l", "scenario=jobs-test", "--flow-run", "run-b")
	if !strings.HasPrefix(stdout, "NAMESPACE ") || !strings.Contains(stdout, ns+"   etl-bbbb ") || strings.Count(stdout, "\n") != 2 {
		t.Errorf("-A --flow-run:\n%s", stdout)
	}

	stdout, _ = run(t, now, "-n", ns, "-o", "name", "report-dddd", "etl-bbbb", "not-prefect")
	expect(t, "-o name with NAME arguments", stdout, "job.batch/etl-bbbb\njob.batch/report-dddd\n")

	stdout, _ = run(t, now, "-n", ns, "-o", "name", "--sort-by", "{.metadata.annotations.prefect\\.io/flow-run-name}")
	expect(t, "-o name --sort-by", stdout, "job.batch/etl-aaaa\njob.batch/etl-bbbb\njob.batch/report-cccc\njob.batch/report-dddd\n")

	stdout, _ = run(t, now, "-n", ns, "-o", "name", "report-dddd", "etl-bbbb", "not-prefect")
	expect(t, "-o name with NAME arguments", stdout, "job.batch/etl-bbbb\njob.batch/report-dddd\n")

	stdout, _ = run(t, now, "-n", ns, "-o", "name", "--sort-by", ".metadata.labels.prefect\\.io/flow_run_id", "--chunk-size", "1")
	expect(t, "-o name, paged by one", stdout, "job.batch/etl-aaaa\njob.batch/etl-bbbb\njob.batch/report-cccc\njob.batch/report-dddd\n")

	stdout, _ = run(t, now, "-n", ns, "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.failed}{\"\\n\"}{end}")
	expect(t, "-o jsonpath", stdout, "etl-aaaa=1\netl-bbbb=\nreport-cccc=\nreport-dddd=\n")

	stdout, _ = run(t, now, "-n", ns, "-o", `go-template={{range .items}}{{.metadata.name}} {{index .metadata.annotations "prefect.io/flow-name"}}{{"\n"}}{{end}}`)
	expect(t, "-o go-template", stdout, "etl-aaaa etl\netl-bbbb etl\nreport-cccc report\nreport-dddd report\n")

	stdout, _ = run(t, now, "-n", ns, "-o", "custom-columns=JOB:.metadata.name,RUN:.metadata.labels.prefect\\.io/flow_run_id,FAILED:.status.failed")
	expect(t, "-o custom-columns", stdout, `JOB           RUN     FAILED
etl-aaaa      run-a   1
etl-bbbb      run-b   <none>
report-cccc   run-c   <none>
report-dddd   run-d   <none>
`)

	for _, format := range []string{"json", "yaml"} {
		stdout, _ = run(t, now, "-n", ns, "-o", format)
		var list struct {
			APIVersion, Kind string
			Items            []struct {
				APIVersion, Kind string
				Metadata         struct{ Name string }
			}
		}
		var err error
		if format == "json" {
			err = json.Unmarshal([]byte(stdout), &list)
		} else {
			err = yaml.Unmarshal([]byte(stdout), &list)
		}
		if err != nil || list.Kind != "List" || list.APIVersion != "v1" || len(list.Items) != 4 {
			t.Fatalf("-o %s: %v\n%s", format, err, stdout)
		}
		for _, it := range list.Items {
			if it.Kind != "Job" || it.APIVersion != "batch/v1" || it.Metadata.Name == "" {
				t.Errorf("-o %s item %+v lacks its kind", format, it)
			}
		}
		if strings.Contains(stdout, "managedFields") {
			t.Errorf("-o %s shows managed fields", format)
		}
	}
}

func TestJobsEmpty(t *testing.T) {
	ns := cluster.Namespace(t)
	stdout, stderr := run(t, time.Now(), "-n", ns)
	expect(t, "stdout", stdout, "")
	expect(t, "stderr", stderr, "No resources found in "+ns+" namespace.\n")
	stdout, stderr = run(t, time.Now(), "-A", "-l", "scenario=nothing-has-this")
	expect(t, "-A stdout", stdout, "")
	expect(t, "-A stderr", stderr, "No resources found\n")
}

func TestJobsWatchStreamsNewJobs(t *testing.T) {
	ns := cluster.Namespace(t)
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	out := &testbed.SyncBuffer{}
	streams.Out = out
	configFlags := genericclioptions.NewConfigFlags(false)
	cmd := NewCmdJobs(configFlags, streams)
	configFlags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs([]string{"--kubeconfig", cluster.Kubeconfig, "-n", ns, "-w", "-o", "name"})
	// A Job that exists before the watch starts is in its first listing;
	// the one created after that listing was printed can only come from
	// the watch.
	if _, err := cluster.Client.BatchV1().Jobs(ns).Create(context.Background(), agentJob("early-dddd", "early", "old-run", "run-d", testbed.ImageRun, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	printed := func(name string) bool {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), name) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		return strings.Contains(out.String(), name)
	}
	if !printed("job.batch/early-dddd") {
		cancel()
		t.Fatalf("the first listing printed %q, want the Job that existed", out.String())
	}
	if _, err := cluster.Client.BatchV1().Jobs(ns).Create(context.Background(), agentJob("late-eeee", "late", "new-run", "run-e", testbed.ImageRun, ""), metav1.CreateOptions{}); err != nil {
		cancel()
		t.Fatal(err)
	}
	streamed := printed("job.batch/late-eeee")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !streamed {
		t.Fatalf("the watch printed %q, want the Job created after its first listing", out.String())
	}
}
