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
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

// skipShort skips a test that waits out timeouts or back-offs under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("waits for timeouts on the real control plane; run without -short")
	}
}

// gathered reads one gauge of the agent's metrics by its reason label.
func gathered(t *testing.T, ra *runningAgent, name, reason string) float64 {
	t.Helper()
	families, err := ra.agent.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// runningPod waits for the run's pod to run and returns it.
func (e *env) runningPod(runID string) corev1.Pod {
	e.t.Helper()
	var pod corev1.Pod
	eventually(e.t, "the pod of "+runID+" to run", func() bool {
		pods, _ := cluster.Client.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "prefect.io/flow_run_id=" + runID})
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				pod = p
				return true
			}
		}
		return false
	})
	return pod
}

func (e *env) warned(runID, sub string) {
	e.t.Helper()
	eventually(e.t, "a WARNING on "+runID+" containing "+sub, func() bool {
		r, _ := e.em.FlowRun(runID)
		return contains(logsAt(r, "WARNING"), sub)
	})
}

func everFailed(run emulator.FlowRun) bool {
	for _, s := range run.States {
		if s.Type == "Failed" {
			return true
		}
	}
	return false
}

func TestQuotaQueuedRunCompletes(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "one-pod"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}}
	if _, err := cluster.Client.CoreV1().ResourceQuotas(e.ns).Create(context.Background(), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the quota to be counted", func() bool {
		q, err := cluster.Client.CoreV1().ResourceQuotas(e.ns).Get(context.Background(), "one-pod", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil
	})
	first := e.schedule(imageRun(t, testbed.ImageRun, nil))
	e.start("", managed(true))
	e.runningPod(first.ID)
	queued := e.schedule(emulator.FlowRunSpec{})
	e.warned(queued.ID, "exceeded quota")
	if r, _ := e.em.FlowRun(queued.ID); r.State != "Submitted" {
		t.Fatalf("a quota-queued run is %s, want Submitted", r.State)
	}
	// The first flow ends (here: cancelled), the quota frees, the queued Job gets its pod.
	if _, err := e.em.SetFlowRunState(first.ID, "Cancelled", "done with it"); err != nil {
		t.Fatal(err)
	}
	e.warned(queued.ID, "completed but the flow run never reported a final state")
	e.waitJobGone(queued.ID)
	r, _ := e.em.FlowRun(queued.ID)
	if everFailed(r) || len(logsAt(r, "ERROR")) > 0 {
		t.Fatalf("the queued run was failed: %+v", r.Logs)
	}
	quotaLines := 0
	for _, l := range logsAt(r, "WARNING") {
		if strings.Contains(l, "exceeded quota") {
			quotaLines++
		}
	}
	if quotaLines != 1 {
		t.Fatalf("%d WARNING lines about the quota, want 1: %q", quotaLines, logsAt(r, "WARNING"))
	}
}

func TestImagePullGrace(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageImagePull, nil))
	e.start("", func(c *Config) {
		managed(false)(c)
		c.Manage.Pending.ImagePullGrace = 5 * time.Second
	})
	e.warned(run.ID, `cannot pull image "testbed.invalid/fate:image-pull"`)
	if r, _ := e.em.FlowRun(run.ID); r.State != "Submitted" {
		t.Fatalf("within the grace the run is %s", r.State)
	}
	got := e.waitFailed(run.ID, "Gave up after waiting")
	if !strings.Contains(logsAt(got, "ERROR")[0], "(image-pull)") {
		t.Fatalf("ERROR %q", logsAt(got, "ERROR")[0])
	}
	e.waitJobGone(run.ID)
}

func TestSidecarExitDoesNotFailTheRun(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	template := map[string]any{"apiVersion": "batch/v1", "kind": "Job", "spec": map[string]any{"template": map[string]any{"spec": map[string]any{
		"containers": []any{map[string]any{"name": "flow"}, map[string]any{"name": "proxy", "image": "envoyproxy/envoy:v1.31"}},
	}}}}
	run := e.schedule(imageRun(t, testbed.ImageSidecarExit1, map[string]any{"job_template": template}))
	ra := e.start("", managed(true))
	e.waitSubmitted(run.ID)
	eventually(t, "the sidecar to exit 1", func() bool {
		pods, _ := cluster.Client.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "prefect.io/flow_run_id=" + run.ID})
		for _, p := range pods.Items {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Name == "proxy" && cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 1 {
					return true
				}
			}
		}
		return false
	})
	// The agent looks at the pod again, as it is now.
	e.resync(ra, run.ID)
	r, _ := e.em.FlowRun(run.ID)
	if r.State != "Submitted" || len(logsAt(r, "ERROR")) > 0 {
		t.Fatalf("a sidecar's exit failed the run: %s %q", r.State, logsAt(r, "ERROR"))
	}
	if len(e.jobsFor(run.ID)) != 1 {
		t.Fatalf("the Job of a running flow was deleted")
	}
}

func TestEvictionReachesTheRunAndOneFreshStart(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageRun, nil))
	ra := e.start("", managed(false))
	e.waitSubmitted(run.ID)
	pod := e.runningPod(run.ID)
	evicted := time.Now()
	err := cluster.Client.CoreV1().Pods(e.ns).EvictV1(context.Background(), &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: e.ns}})
	if err != nil {
		t.Fatal(err)
	}
	e.warned(run.ID, "Pod "+pod.Name+" of Job")
	t.Logf("eviction written to the run %s after the Eviction API call", time.Since(evicted).Round(10*time.Millisecond))
	e.warned(run.ID, "runs the flow again")
	replacement := e.runningPod(run.ID)
	if replacement.Name == pod.Name {
		t.Fatalf("no replacement pod")
	}
	eventually(t, "the evicted pod to be gone", func() bool {
		_, err := cluster.Client.CoreV1().Pods(e.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	// The agent looks at the Job and its pods again, as they are now.
	e.resync(ra, run.ID)
	r, _ := e.em.FlowRun(run.ID)
	if r.State != "Submitted" || everFailed(r) || len(logsAt(r, "ERROR")) > 0 {
		t.Fatalf("an evicted run the Job carries on with is %s: %+v", r.State, r.Logs)
	}
	again := 0
	for _, l := range logsAt(r, "WARNING") {
		if strings.Contains(l, "runs the flow again") {
			again++
		}
	}
	pods, _ := cluster.Client.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "prefect.io/flow_run_id=" + run.ID})
	if again != 1 || len(pods.Items) != 1 || len(e.jobsFor(run.ID)) != 1 {
		t.Fatalf("fresh starts: %d lines, %d pods, %d Jobs; want exactly one of each", again, len(pods.Items), len(e.jobsFor(run.ID)))
	}
}

func TestCancellingRunBeforeItsFlowStarted(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	pending := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": testbed.UnschedulableCPU}))
	running := e.schedule(imageRun(t, testbed.ImageRun, nil))
	e.start("", func(c *Config) { managed(false)(c); c.Manage.Pending.UnschedulableTimeout = time.Hour })
	e.warned(pending.ID, "cannot be scheduled yet")
	e.runningPod(running.ID)
	for _, id := range []string{pending.ID, running.ID} {
		if _, err := e.em.SetFlowRunState(id, "Cancelling", "cancelled by a user"); err != nil {
			t.Fatal(err)
		}
	}
	// Never started: the agent deletes the Job and finishes the cancellation.
	e.waitState(pending.ID, "Cancelled")
	e.waitJobGone(pending.ID)
	// Running: the flow runner cancels itself; the agent leaves it alone.
	// Three more cancellation checks (every 0.1 s), each of which would
	// have acted on the Cancelling run (the checks stop once no Job is left).
	leftAlone := func() bool {
		r, _ := e.em.FlowRun(running.ID)
		return r.State == "Cancelling" && len(e.jobsFor(running.ID)) == 1
	}
	e.waitRequests("EndedRunsSince", 3, func() bool { return !leftAlone() })
	if r, _ := e.em.FlowRun(running.ID); r.State != "Cancelling" || len(e.jobsFor(running.ID)) != 1 {
		t.Fatalf("the running flow was not left to cancel itself: %s, %d Jobs", r.State, len(e.jobsFor(running.ID)))
	}
	if _, err := e.em.SetFlowRunState(running.ID, "Cancelled", "the flow runner cancelled the run"); err != nil {
		t.Fatal(err)
	}
	e.waitJobGone(running.ID)
}

func TestCancellationCheckIsOneRequestPerInterval(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	const runs = 20
	var ids []string
	for i := 0; i < runs; i++ {
		ids = append(ids, e.schedule(imageRun(t, testbed.ImageRun, nil)).ID)
	}
	interval := 200 * time.Millisecond
	e.start("", func(c *Config) { managed(false)(c); c.Manage.EndedCheckInterval = interval })
	for _, id := range ids {
		e.runningPod(id)
	}
	before := e.em.Requests()
	window := 3 * time.Second
	time.Sleep(window)
	after := e.em.Requests()
	checks := after["EndedRunsSince"] - before["EndedRunsSince"]
	if max := int(window/interval) + 1; checks < 5 || checks > max {
		t.Fatalf("%d cancellation requests in %s with %d Jobs, want about one per %s (at most %d)", checks, window, runs, interval, max)
	}
	if reads := after["FlowRunStates"] - before["FlowRunStates"]; reads != 0 {
		t.Fatalf("%d per-run state reads while nothing happened", reads)
	}
	// And it still finds a cancellation.
	if _, err := e.em.SetFlowRunState(ids[7], "Cancelled", "by a user"); err != nil {
		t.Fatal(err)
	}
	e.waitJobGone(ids[7])
}

func TestReportWaitsForPrefectAndKeepsTheJob(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": testbed.UnschedulableCPU}))
	ra := e.start("", func(c *Config) { managed(true)(c); c.Manage.Pending.UnschedulableTimeout = 4 * time.Second })
	e.warned(run.ID, "cannot be scheduled yet")
	timedOut := time.Now().Add(4 * time.Second) // the wait began before its line
	e.em.SetFaults(emulator.Faults{ServerErrorRate: 1, Seed: 1})
	// The 4 s timeout passes during the outage: nothing can be reported, so
	// nothing is deleted. Once it has passed, wait for two more failed tries
	// to manage the Job (its report refused, the second a retry of the
	// first), or for the Job to go (then no try fails any more).
	time.Sleep(time.Until(timedOut))
	failures := func() int { return strings.Count(ra.logs.String(), "Managing Job failed; will retry") }
	before := failures()
	eventually(t, "two more failed tries to report the give-up", func() bool {
		return failures() >= before+2 || len(e.jobsFor(run.ID)) != 1
	})
	if len(e.jobsFor(run.ID)) != 1 {
		t.Fatalf("the Job was deleted while its report could not reach Prefect")
	}
	e.em.SetFaults(emulator.Faults{})
	e.waitFailed(run.ID, "Gave up after waiting")
	e.waitJobGone(run.ID)
	e.stillOneError(ra, run.ID)
}

func TestMissingWatchVerbIsNamed(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	ctx := context.Background()
	sa := "restricted"
	if _, err := cluster.Client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The 1.x least-privilege Role, plus watch on jobs and events: pods can be listed, not watched.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sa}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "list", "watch", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list", "watch"}},
	}}
	if _, err := cluster.Client.RbacV1().Roles(e.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa}, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: sa},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: e.ns}}}
	if _, err := cluster.Client.RbacV1().RoleBindings(e.ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: fmt.Sprintf("system:serviceaccount:%s:%s", e.ns, sa)}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var checkErr error
	eventually(t, "the start-up check to name the missing verb", func() bool {
		checkErr = CheckPermissions(ctx, kube, e.ns, false, "")
		return checkErr != nil && strings.Contains(checkErr.Error(), "may not watch pods")
	})
	if !strings.Contains(checkErr.Error(), "agent install --rbac") || strings.Contains(checkErr.Error(), "list pods") {
		t.Fatalf("start-up check: %v", checkErr)
	}
	// A namespaced Role does not cover --watch-all-namespaces.
	if err := CheckPermissions(ctx, kube, e.ns, true, ""); err == nil || !strings.Contains(err.Error(), "list jobs.batch in all namespaces") {
		t.Fatalf("--watch-all-namespaces under a Role: %v", err)
	}
	// At run time (a Role changed after the start), /api/health fails with the same words.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	e.start("", func(c *Config) { managed(true)(c); c.Kube = kube; c.HealthAddress = addr })
	var body string
	eventually(t, "/api/health to fail naming the verb", func() bool {
		resp, err := http.Get("http://" + addr + "/api/health")
		if err != nil {
			return false
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(raw)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "may not watch pods")
	})
	t.Logf("/api/health: %s", body)
}

// pendingPod waits for the run's pod to exist and returns it.
func (e *env) pendingPod(runID string) corev1.Pod {
	e.t.Helper()
	var pod corev1.Pod
	eventually(e.t, "the pod of "+runID, func() bool {
		pods, _ := cluster.Client.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "prefect.io/flow_run_id=" + runID})
		if len(pods.Items) == 0 {
			return false
		}
		pod = pods.Items[0]
		return true
	})
	return pod
}

// autoscalerEvent records an event about a pod as cluster-autoscaler does.
func (e *env) autoscalerEvent(pod corev1.Pod, reason, message string) {
	e.t.Helper()
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: pod.Name + "."},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, APIVersion: "v1"},
		Reason:         reason, Message: message, Type: corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "cluster-autoscaler"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if _, err := cluster.Client.CoreV1().Events(e.ns).Create(context.Background(), ev, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func TestScaleUpExtendsTheWait(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	grows := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": testbed.UnschedulableCPU}))
	never := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": testbed.UnschedulableCPU}))
	const timeout = 6 * time.Second
	ra := e.start("", func(c *Config) {
		managed(false)(c)
		c.Manage.Pending.UnschedulableTimeout = timeout
	})
	growing := e.pendingPod(grows.ID)
	e.autoscalerEvent(growing, "TriggeredScaleUp", "pod triggered scale-up: [{gpu-pool 0->1 (max: 4)}]")
	e.autoscalerEvent(e.pendingPod(never.ID), "NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size reached")
	e.warned(grows.ID, "cluster-autoscaler is adding a node")
	e.warned(never.ID, "no node group can fit it")
	e.waitFailed(never.ID, "Gave up after waiting")
	// Its pod has waited longer than the unschedulable timeout (counted
	// from its creation) by the time the agent looks at both Jobs again.
	time.Sleep(time.Until(growing.CreationTimestamp.Add(timeout)))
	e.resync(ra, grows.ID, never.ID)
	if r, _ := e.em.FlowRun(grows.ID); r.State != "Submitted" || len(e.jobsFor(grows.ID)) != 1 {
		t.Fatalf("a pod cluster-autoscaler scales up for was given up after the unschedulable timeout: %s", r.State)
	}
}

func TestEvictedJobThatGivesUpIsRescheduledOnce(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	template := map[string]any{"apiVersion": "batch/v1", "kind": "Job", "spec": map[string]any{"backoffLimit": 0,
		"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "flow"}}}}}}
	run := e.schedule(imageRun(t, testbed.ImageRun, map[string]any{"job_template": template}))
	ra := e.start("", managed(false))
	e.waitSubmitted(run.ID)
	pod := e.runningPod(run.ID)
	if err := cluster.Client.CoreV1().Pods(e.ns).EvictV1(context.Background(), &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: e.ns}}); err != nil {
		t.Fatal(err)
	}
	e.warned(run.ID, "rescheduled for a fresh attempt")
	eventually(t, "a second Job for the rescheduled run", func() bool { return len(e.jobsFor(run.ID)) == 2 })
	// Once the second Job's pod runs, the agent looks at both Jobs again:
	// the first, which gave up, must not reschedule the run a second time.
	e.runningPod(run.ID)
	e.resync(ra, run.ID)
	r, _ := e.em.FlowRun(run.ID)
	scheduled := 0
	for _, s := range r.States {
		if s.Type == "Scheduled" {
			scheduled++
		}
	}
	if everFailed(r) || scheduled != 2 || len(e.jobsFor(run.ID)) != 2 || r.State != "Submitted" {
		t.Fatalf("want one fresh attempt: state %s, %d Scheduled states, failed %v, %d Jobs", r.State, scheduled, everFailed(r), len(e.jobsFor(run.ID)))
	}
}
