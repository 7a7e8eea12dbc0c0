package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

func TestUniversalRunBecomesJobAndRunsToCompletion(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{
		RunConfig: runConfig(t, map[string]any{"type": "UniversalRun", "env": map[string]string{"RUN_ENV": "r"}, "labels": []string{}}),
		TaskRuns:  []emulator.TaskRunSpec{{}},
		// Task runs are submitted with their flow run once due 3 s ago or more.
		ScheduledStartTime: time.Now().Add(-time.Minute),
	})
	e.start("", func(c *Config) { c.Job.Env = []manifest.EnvVar{{Name: "AGENT_ENV", Value: "a"}} })

	got := e.waitSubmitted(run.ID)
	jobs := e.jobsFor(run.ID)
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs for the run, want 1", len(jobs))
	}
	job := jobs[0]
	if msg := logsAt(got, "INFO")[0]; msg != "Submitted for execution: Job "+job.Name {
		t.Fatalf("run log %q does not name Job %s", msg, job.Name)
	}
	if got.Version != 2 || got.States[1].Message != "Submitted for execution" || got.TaskRuns[0].State != "Submitted" {
		t.Fatalf("run after submission: version %d, states %+v, task run %s", got.Version, got.States, got.TaskRuns[0].State)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if c.Image != "prefecthq/prefect:1.4.1" || strings.Join(c.Args, " ") != "prefect execute flow-run" {
		t.Fatalf("container image %q args %v", c.Image, c.Args)
	}
	for name, want := range map[string]string{"AGENT_ENV": "a", "RUN_ENV": "r", "PREFECT__CONTEXT__FLOW_RUN_ID": run.ID, "PREFECT__BACKEND": "server"} {
		if v, _ := envValue(job, name); v != want {
			t.Errorf("env %s = %q, want %q", name, v, want)
		}
	}
	if job.Labels[manifest.LabelFlowRunID] != run.ID || job.Spec.Template.Labels[manifest.LabelFlowID] != run.Flow.ID {
		t.Fatalf("labels: job %v pod %v", job.Labels, job.Spec.Template.Labels)
	}
	eventually(t, "the Job to complete", func() bool {
		j, err := cluster.Client.BatchV1().Jobs(e.ns).Get(context.Background(), job.Name, metav1.GetOptions{})
		return err == nil && j.Status.Succeeded == 1
	})
}

func TestKubernetesRunFieldsReachTheJob(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{
		"type": "KubernetesRun", "image": "registry.example.com/flow:2", "env": map[string]string{"A": "1"},
		"cpu_request": "250m", "cpu_limit": "1", "memory_request": "256Mi", "memory_limit": "1Gi",
		"service_account_name": "flow-sa", "image_pull_secrets": []string{"regcred"}, "image_pull_policy": "Always",
	})})
	e.start("", nil)
	e.waitSubmitted(run.ID)
	jobs := e.jobsFor(run.ID)
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs, want 1", len(jobs))
	}
	pod := jobs[0].Spec.Template.Spec
	c := pod.Containers[0]
	checks := map[string][2]string{
		"image":              {c.Image, "registry.example.com/flow:2"},
		"pull policy":        {string(c.ImagePullPolicy), "Always"},
		"cpu request":        {c.Resources.Requests.Cpu().String(), "250m"},
		"cpu limit":          {c.Resources.Limits.Cpu().String(), "1"},
		"memory request":     {c.Resources.Requests.Memory().String(), "256Mi"},
		"memory limit":       {c.Resources.Limits.Memory().String(), "1Gi"},
		"service account":    {pod.ServiceAccountName, "flow-sa"},
		"image pull secrets": {fmt.Sprint(pod.ImagePullSecrets), "[{regcred}]"},
	}
	for what, gw := range checks {
		if gw[0] != gw[1] {
			t.Errorf("%s = %q, want %q", what, gw[0], gw[1])
		}
	}
	if v, _ := envValue(jobs[0], "A"); v != "1" {
		t.Errorf("env A = %q", v)
	}
}

func TestAgentAndPerRunTemplates(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	agentTemplate, err := manifest.ParseTemplate([]byte(`
metadata: {name: team, labels: {team: data}}
spec:
  backoffLimit: 1
  template:
    spec:
      containers:
      - name: flow
        env: [{name: FROM_AGENT_TEMPLATE, value: "yes"}]
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	withAgentTemplate := e.schedule(emulator.FlowRunSpec{})
	perRun := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{
		"type": "KubernetesRun",
		"job_template": map[string]any{"apiVersion": "batch/v1", "kind": "Job", "metadata": map[string]any{"name": "own"},
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "flow", "image": "example/own:1"}}}}}},
	})})
	e.start("", func(c *Config) { c.Job.Template = agentTemplate })
	e.waitSubmitted(withAgentTemplate.ID)
	e.waitSubmitted(perRun.ID)

	a := e.jobsFor(withAgentTemplate.ID)[0]
	if !strings.HasPrefix(a.Name, "team-") || a.Labels["team"] != "data" || *a.Spec.BackoffLimit != 1 {
		t.Fatalf("agent template not used: name %s labels %v", a.Name, a.Labels)
	}
	if v, _ := envValue(a, "FROM_AGENT_TEMPLATE"); v != "yes" {
		t.Fatalf("template env lost")
	}
	p := e.jobsFor(perRun.ID)[0]
	if !strings.HasPrefix(p.Name, "own-") || p.Labels["team"] != "" || p.Spec.Template.Spec.Containers[0].Image != "example/own:1" {
		t.Fatalf("the run's template should replace the agent's: name %s labels %v image %s", p.Name, p.Labels, p.Spec.Template.Spec.Containers[0].Image)
	}
}

func TestOnlyMatchingLabelsAreTaken(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	matching := e.schedule(emulator.FlowRunSpec{Labels: []string{"k8s"}})
	subset := e.schedule(emulator.FlowRunSpec{Labels: []string{"k8s", "prod"}})
	other := e.schedule(emulator.FlowRunSpec{Labels: []string{"gpu"}})
	unlabelled := e.schedule(emulator.FlowRunSpec{})
	ra := e.start("", func(c *Config) { c.Labels = []string{"k8s", "prod"}; c.Job.Labels = c.Labels })
	e.waitSubmitted(matching.ID)
	e.waitSubmitted(subset.ID)
	// Three more polls, each of which would hand the others to workers; the
	// stop lets a worker handed one finish before they are looked at.
	e.waitRequests("DueFlowRuns", 3, nil)
	ra.halt(t)
	for _, id := range []string{other.ID, unlabelled.ID} {
		run, _ := e.em.FlowRun(id)
		if run.State != "Scheduled" || len(e.jobsFor(id)) != 0 {
			t.Errorf("run %s with labels %v was taken: state %s", id, run.Labels, run.State)
		}
	}
	if v, _ := envValue(e.jobsFor(matching.ID)[0], "PREFECT__CLOUD__AGENT__LABELS"); v != "['k8s', 'prod']" {
		t.Errorf("PREFECT__CLOUD__AGENT__LABELS = %q", v)
	}
}

func TestBadRunsFailWhileOthersProceed(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	good1 := e.schedule(emulator.FlowRunSpec{})
	docker := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "DockerRun"})})
	quantity := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "KubernetesRun", "memory_limit": "lots"})})
	refused := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "KubernetesRun",
		"job_template": map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"restartPolicy": "Sometimes"}}}}})})
	good2 := e.schedule(emulator.FlowRunSpec{})
	e.start("", nil)

	for id, want := range map[string]string{
		docker.ID:   "run_config of type DockerRun",
		quantity.ID: `memory_limit "lots" is not a Kubernetes quantity`,
		refused.ID:  "Kubernetes refused the flow run's Job",
	} {
		run := e.waitState(id, "Failed")
		last := run.States[len(run.States)-1]
		errs := logsAt(run, "ERROR")
		if !strings.Contains(last.Message, want) || len(errs) != 1 || errs[0] != last.Message {
			t.Errorf("run %s: Failed message %q, ERROR lines %q; want both to say %q", id, last.Message, errs, want)
		}
	}
	// Failing goes through a claim, like a submission: only the agent whose
	// mark wins the Scheduled state may fail the run.
	if run, _ := e.em.FlowRun(docker.ID); len(run.States) != 3 || run.States[1].Type != "Submitted" ||
		!strings.Contains(run.States[1].Message, "cannot be built") || len(e.jobsFor(docker.ID)) != 0 {
		t.Errorf("a run whose Job cannot be built must be claimed then Failed, with no Job; states: %+v", run.States)
	}
	if run, _ := e.em.FlowRun(refused.ID); !strings.Contains(run.States[2].Message, "restartPolicy") {
		t.Errorf("the API's reason is not in the message: %q", run.States[2].Message)
	}
	e.waitSubmitted(good1.ID)
	e.waitSubmitted(good2.ID)
}

func TestRestartMidBurstNeverMakesASecondJob(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	const n = 60
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, e.schedule(emulator.FlowRunSpec{}).ID)
	}
	first := e.start("", func(c *Config) { c.Concurrency = 4 })
	eventually(t, "the first Jobs", func() bool {
		list, _ := cluster.Client.BatchV1().Jobs(e.ns).List(context.Background(), metav1.ListOptions{})
		return len(list.Items) >= 5
	})
	first.halt(t)
	// Two agents at once, as after a rolling restart.
	e.start("", nil)
	e.start("", nil)
	for _, id := range ids {
		e.waitSubmitted(id)
	}
	list, err := cluster.Client.BatchV1().Jobs(e.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	perRun := map[string]int{}
	for _, j := range list.Items {
		perRun[j.Labels[manifest.LabelFlowRunID]]++
	}
	for _, id := range ids {
		if perRun[id] != 1 {
			t.Errorf("run %s has %d Jobs", id, perRun[id])
		}
	}
	if len(list.Items) != n {
		t.Errorf("%d Jobs for %d runs", len(list.Items), n)
	}
}

func TestFlakyAPIStillSubmitsEveryRunOnce(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.em.SetFaults(emulator.Faults{ServerErrorRate: 0.25, RateLimitRate: 0.1, Seed: 3})
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, e.schedule(emulator.FlowRunSpec{}).ID)
	}
	// With a third of requests failing, give each more tries than the default six.
	e.start("", func(c *Config) {
		c.Prefect = prefect.NewClient(prefect.Config{API: e.api, Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, MaxAttempts: 20})
	})
	for _, id := range ids {
		e.waitSubmitted(id)
		if n := len(e.jobsFor(id)); n != 1 {
			t.Errorf("run %s has %d Jobs", id, n)
		}
	}
	if f := e.em.InjectedFaults(); f["5xx"] == 0 {
		t.Fatalf("no faults were injected: %v", f)
	}
}

func TestCloudKeyStaysOutOfLogsAndJobs(t *testing.T) {
	tenant := emulator.Tenant{ID: "0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d", Name: "team", Slug: "team"}
	const key = "pcu_TOPSECRETKEY123"
	e := newEnv(t, emulator.Config{Backend: emulator.Cloud, Tenants: []emulator.Tenant{tenant}, APIKeys: map[string]string{key: tenant.ID}})
	run := e.schedule(emulator.FlowRunSpec{TenantID: tenant.ID, RunConfig: runConfig(t, map[string]any{"type": "DockerRun"})})
	ok := e.schedule(emulator.FlowRunSpec{TenantID: tenant.ID})
	ra := e.start(key, func(c *Config) { c.Backend = "cloud"; c.Job.Backend = "cloud"; c.Job.APIKeySecret = "prefect-agent" })
	e.waitState(run.ID, "Failed")
	e.waitSubmitted(ok.ID)
	ra.halt(t)
	job := e.jobsFor(ok.ID)[0]
	raw := fmt.Sprintf("%+v", job)
	if strings.Contains(raw, key) {
		t.Errorf("the API key is in the Job")
	}
	if v, _ := envValue(job, "PREFECT__CLOUD__TENANT_ID"); v != tenant.ID {
		t.Errorf("tenant in the Job = %q", v)
	}
	if strings.Contains(ra.logs.String(), key) {
		t.Errorf("the API key is in the agent's logs")
	}
	for _, r := range e.em.FlowRuns() {
		for _, l := range r.Logs {
			if strings.Contains(l.Message, key) {
				t.Errorf("the API key is in a run log: %q", l.Message)
			}
		}
	}
}

func TestWrongKeyStopsWithAdvice(t *testing.T) {
	tenant := emulator.Tenant{ID: "0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d", Name: "team", Slug: "team"}
	e := newEnv(t, emulator.Config{Backend: emulator.Cloud, Tenants: []emulator.Tenant{tenant}, APIKeys: map[string]string{"right": tenant.ID}})
	cfgKey := "pcu_wrong_key_value"
	a, _ := New(Config{
		Prefect: newClient(e.api, cfgKey), Kube: cluster.Client, Backend: "cloud", Name: "x",
		Job: manifest.AgentSettings{Namespace: e.ns}, Intervals: fastIntervals,
	})
	err := a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refused the API key") || strings.Contains(err.Error(), cfgKey) {
		t.Fatalf("err = %v", err)
	}
}

func TestHealthEndpointAnswersWhileLoopRuns(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	e.start("", func(c *Config) { c.HealthAddress = addr })
	var body string
	eventually(t, "/api/health to answer", func() bool {
		resp, err := http.Get("http://" + addr + "/api/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	})
	if body != "{}" {
		t.Fatalf("health body %q", body)
	}
	run := e.schedule(emulator.FlowRunSpec{})
	resp, err := http.Post("http://"+addr+"/api/poke", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("poke: %v", err)
	}
	resp.Body.Close()
	e.waitSubmitted(run.ID)
}

func TestPodFateImagesAreUsableFromRunConfigs(t *testing.T) {
	// The job-management tests depend on the run config's image reaching the pod.
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "KubernetesRun", "image": testbed.ImageImagePull})})
	e.start("", nil)
	e.waitSubmitted(run.ID)
	eventually(t, "the pod to fail its image pull", func() bool {
		pods, _ := cluster.Client.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.ID})
		for _, p := range pods.Items {
			for _, s := range p.Status.ContainerStatuses {
				if s.State.Waiting != nil && s.State.Waiting.Reason == "ImagePullBackOff" && p.Status.Phase == corev1.PodPending {
					return true
				}
			}
		}
		return false
	})
}

// TestASettlingSubmissionLendsItsSlot: with one slot, the second run is
// marked while the first still waits out the second after its mark: the
// wait holds no slot, so a burst is not held to one run per ClaimSettle.
func TestASettlingSubmissionLendsItsSlot(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	first, second := e.schedule(emulator.FlowRunSpec{}), e.schedule(emulator.FlowRunSpec{})
	e.start("", func(c *Config) { c.Concurrency, c.ClaimSettle = 1, 3*time.Second })
	eventually(t, "both runs marked Submitted", func() bool {
		a, _ := e.em.FlowRun(first.ID)
		b, _ := e.em.FlowRun(second.ID)
		return a.State == "Submitted" && b.State == "Submitted"
	})
	if n := len(e.jobsFor(first.ID)) + len(e.jobsFor(second.ID)); n != 0 {
		t.Fatalf("%d Jobs when both runs were marked: the second mark waited for the first run's settle", n)
	}
	e.waitSubmitted(first.ID)
	e.waitSubmitted(second.ID)
	for _, id := range []string{first.ID, second.ID} {
		if n := len(e.jobsFor(id)); n != 1 {
			t.Fatalf("run %s has %d Jobs, want 1", id, n)
		}
	}
}
