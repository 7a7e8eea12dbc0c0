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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

// testPolicy fails image pulls at once (as 1.4.1), gives up on an
// unschedulable pod after 3 s, and waits an hour on anything else.
var testPolicy = jobs.PendingPolicy{QuotaTimeout: time.Hour, AdmissionTimeout: time.Hour, UnschedulableTimeout: 3 * time.Second,
	ScaleUpTimeout: time.Hour, MissingObjectTimeout: time.Hour}

// managed configures an agent that manages its Jobs quickly for tests.
func managed(deleteFinished bool) func(*Config) {
	return func(c *Config) {
		policy := testPolicy
		c.Manage = jobs.Config{DeleteFinishedJobs: deleteFinished, Pending: &policy, EndedCheckInterval: 100 * time.Millisecond}
	}
}

func imageRun(t *testing.T, image string, extra map[string]any) emulator.FlowRunSpec {
	rc := map[string]any{"type": "KubernetesRun", "image": image}
	for k, v := range extra {
		rc[k] = v
	}
	return emulator.FlowRunSpec{RunConfig: runConfig(t, rc)}
}

// waitFailed waits for the run to be Failed with one ERROR line containing want.
func (e *env) waitFailed(id, want string) emulator.FlowRun {
	e.t.Helper()
	run := e.waitState(id, "Failed")
	errs := logsAt(run, "ERROR")
	if len(errs) != 1 || !strings.Contains(errs[0], want) {
		e.t.Fatalf("ERROR lines %q, want exactly one containing %q", errs, want)
	}
	if msg := run.States[len(run.States)-1].Message; msg != errs[0] {
		e.t.Fatalf("Failed state message %q differs from the ERROR line %q", msg, errs[0])
	}
	return run
}

// stillOneError checks that nothing was reported again once the agent has
// looked at the run's Job again (or seen it gone).
func (e *env) stillOneError(ra *runningAgent, id string) {
	e.t.Helper()
	e.resync(ra, id)
	run, _ := e.em.FlowRun(id)
	if errs := logsAt(run, "ERROR"); len(errs) != 1 {
		e.t.Fatalf("%d ERROR lines once the agent synced the Job again, want 1: %q", len(errs), errs)
	}
}

func (e *env) waitJobGone(runID string) {
	e.t.Helper()
	eventually(e.t, "the Job of "+runID+" to be deleted", func() bool { return len(e.jobsFor(runID)) == 0 })
}

func TestImagePullFailureIsReportedOnce(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageImagePull, nil))
	start := time.Now()
	ra := e.start("", managed(true))
	e.waitFailed(run.ID, `cannot pull image "testbed.invalid/fate:image-pull" (ErrImagePull)`)
	t.Logf("reported %s after the agent started", time.Since(start).Round(10*time.Millisecond))
	e.waitJobGone(run.ID)
	e.stillOneError(ra, run.ID)
}

func TestUnschedulableRunWaitsThenGivesUp(t *testing.T) {
	skipShort(t)
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": testbed.UnschedulableCPU}))
	ra := e.start("", func(c *Config) { managed(false)(c); c.Manage.Pending.UnschedulableTimeout = 10 * time.Second })
	eventually(t, "the WARNING that the pod cannot be scheduled yet", func() bool {
		r, _ := e.em.FlowRun(run.ID)
		return contains(logsAt(r, "WARNING"), "Insufficient cpu")
	})
	if r, _ := e.em.FlowRun(run.ID); r.State != "Submitted" || len(logsAt(r, "ERROR")) > 0 {
		t.Fatalf("within its timeout the run is %s with errors %q", r.State, logsAt(r, "ERROR"))
	}
	// The line is written before the Job's annotation and the gauge are
	// updated, so both are awaited (well inside the 10 s timeout).
	eventually(t, "prefect_agent_jobs_waiting{reason=unschedulable} = 1", func() bool {
		return gathered(t, ra, "prefect_agent_jobs_waiting", "unschedulable") == 1
	})
	// The annotation is patched right after the line is written.
	eventually(t, "the Job to record why it waits", func() bool {
		found := e.jobsFor(run.ID)
		return len(found) == 1 && found[0].Annotations[jobs.AnnotationWaitingReason] == "unschedulable"
	})
	got := e.waitFailed(run.ID, "Insufficient cpu")
	if msg := logsAt(got, "ERROR")[0]; !strings.Contains(msg, "Gave up after waiting") || !strings.Contains(msg, "s (unschedulable)") {
		t.Fatalf("message %q does not say how long it waited", msg)
	}
	if len(logsAt(got, "WARNING")) != 1 {
		t.Errorf("WARNING lines %q, want one", logsAt(got, "WARNING"))
	}
	// Given up: deleted even with --delete-finished-jobs=false, so it cannot start later.
	e.waitJobGone(run.ID)
	e.stillOneError(ra, run.ID)
}

func TestCrashingAndOOMKilledPods(t *testing.T) {
	for _, tc := range []struct{ image, want string }{
		{testbed.ImageExit1, `container "flow" terminated with exit code 1 (Error): flow process exited with status 1`},
		{testbed.ImageOOM, `container "flow" terminated with exit code 137 (OOMKilled)`},
	} {
		t.Run(tc.image, func(t *testing.T) {
			e := newEnv(t, emulator.Config{})
			run := e.schedule(imageRun(t, tc.image, nil))
			ra := e.start("", managed(true))
			e.waitFailed(run.ID, tc.want)
			e.waitJobGone(run.ID)
			e.stillOneError(ra, run.ID)
		})
	}
}

func TestSucceededJobsAreDeletedOrKept(t *testing.T) {
	for _, del := range []bool{true, false} {
		t.Run(fmt.Sprintf("delete-finished-jobs=%v", del), func(t *testing.T) {
			e := newEnv(t, emulator.Config{})
			run := e.schedule(emulator.FlowRunSpec{})
			ra := e.start("", managed(del))
			e.waitSubmitted(run.ID)
			eventually(t, "the WARNING that the flow never reported", func() bool {
				r, _ := e.em.FlowRun(run.ID)
				return contains(logsAt(r, "WARNING"), "completed but the flow run never reported a final state")
			})
			if del {
				e.waitJobGone(run.ID)
				return
			}
			// Kept, and warned about once, after the agent looked at it again.
			e.resync(ra, run.ID)
			if found := e.jobsFor(run.ID); len(found) != 1 || found[0].Status.Succeeded != 1 {
				t.Fatalf("the succeeded Job should be kept: %d Jobs", len(found))
			}
			if r, _ := e.em.FlowRun(run.ID); len(logsAt(r, "WARNING")) != 1 || r.State != "Submitted" {
				t.Fatalf("warned %d times, state %s", len(logsAt(r, "WARNING")), r.State)
			}
		})
	}
}

func TestCancelledRunsJobIsDeleted(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(imageRun(t, testbed.ImageRun, nil))
	e.start("", managed(false))
	e.waitSubmitted(run.ID)
	if _, err := e.em.SetFlowRunState(run.ID, "Cancelled", "cancelled by a user"); err != nil {
		t.Fatal(err)
	}
	e.waitJobGone(run.ID)
	if r, _ := e.em.FlowRun(run.ID); r.State != "Cancelled" {
		t.Errorf("state %s", r.State)
	}
	eventually(t, "the INFO line about the deletion", func() bool {
		r, _ := e.em.FlowRun(run.ID)
		return contains(logsAt(r, "INFO"), "the flow run is Cancelled")
	})
}

func TestDeniedPodFailsAtOnce(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	limits := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "small"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
	}}}}
	if _, err := cluster.Client.CoreV1().LimitRanges(e.ns).Create(context.Background(), limits, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server's admission sees a new LimitRange through its cache:
	// wait until it refuses such a pod before the run's Job makes one.
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}}}}}
	eventually(t, "the LimitRange to be enforced", func() bool {
		_, err := cluster.Client.CoreV1().Pods(e.ns).Create(context.Background(), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err)
	})
	run := e.schedule(imageRun(t, "prefecthq/prefect:1.4.1", map[string]any{"cpu_request": "2"}))
	ra := e.start("", managed(false))
	// The denial reaches the agent as the Job controller's FailedCreate event,
	// which a controller-manager busy with the suite's earlier namespaces can
	// be slow to write: wait for the event itself first, and say so if it
	// never comes, so that a slow cluster is told from an agent that missed it.
	deadline := time.Now().Add(2 * time.Minute)
	for !e.hasFailedCreate() {
		if time.Now().After(deadline) {
			t.Fatalf("the Job controller wrote no FailedCreate event in 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := e.waitFailed(run.ID, "(FailedCreate)")
	if len(logsAt(got, "WARNING")) > 0 {
		t.Errorf("a denial is not a wait: %q", logsAt(got, "WARNING"))
	}
	e.waitJobGone(run.ID)
	e.stillOneError(ra, run.ID)
}

func TestRestartedAgentReportsNothingTwice(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	crashed := e.schedule(imageRun(t, testbed.ImageExit1, nil))
	done := e.schedule(emulator.FlowRunSpec{})
	first := e.start("", managed(false))
	e.waitFailed(crashed.ID, "exit code 1")
	eventually(t, "the completed Job's warning", func() bool {
		r, _ := e.em.FlowRun(done.ID)
		return len(logsAt(r, "WARNING")) == 1
	})
	first.halt(t)
	// A problem that happened while no agent ran is reported by the next one.
	crash := e.schedule(imageRun(t, testbed.ImageExit1, nil))
	second := e.start("", managed(false))
	e.waitFailed(crash.ID, "exit code 1")
	// The second agent looks at the first one's Jobs again: what they
	// record keeps it from reporting their problems twice.
	e.resync(second, crashed.ID, done.ID)
	second.halt(t)
	for _, id := range []string{crashed.ID, done.ID} {
		r, _ := e.em.FlowRun(id)
		if n := len(logsAt(r, "ERROR")) + len(logsAt(r, "WARNING")); n != 1 {
			t.Errorf("run %s got %d reports, want 1: %+v", id, n, r.Logs)
		}
	}
	job := e.jobsFor(crashed.ID)[0]
	if !strings.Contains(job.Annotations[jobs.AnnotationReported], "/failed") {
		t.Errorf("the Job does not record what was reported: %v", job.Annotations)
	}
}

func TestLeaderElectionLetsOneReplicaWork(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	elect := func(id string) func(*Config) {
		return func(c *Config) {
			c.LeaderElection = &LeaderElection{LeaseName: "prefect-agent", Namespace: e.ns, Identity: id,
				LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond}
		}
	}
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, e.schedule(emulator.FlowRunSpec{}).ID)
	}
	a := e.start("", elect("replica-a"))
	b := e.start("", elect("replica-b"))
	for _, id := range ids {
		e.waitSubmitted(id)
	}
	created := func(ra *runningAgent) int { return strings.Count(ra.logs.String(), "Created Job for flow run") }
	if ca, cb := created(a), created(b); !(ca == 10 && cb == 0 || ca == 0 && cb == 10) {
		t.Fatalf("both replicas submitted: a created %d Jobs, b %d", ca, cb)
	}
	leader, standby := a, b
	if created(b) > 0 {
		leader, standby = b, a
	}
	leader.halt(t)
	later := e.schedule(emulator.FlowRunSpec{})
	e.waitSubmitted(later.ID)
	if created(standby) != 1 {
		t.Fatalf("the standby did not take over: it created %d Jobs", created(standby))
	}
}

func TestMetricsCountWhatHappened(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	pull := e.schedule(imageRun(t, testbed.ImageImagePull, nil))
	ok := e.schedule(emulator.FlowRunSpec{})
	bad := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "DockerRun"})})
	e.start("", func(c *Config) { managed(true)(c); c.HealthAddress = addr })
	e.waitFailed(pull.ID, "cannot pull image")
	e.waitSubmitted(ok.ID)
	e.waitState(bad.ID, "Failed")
	e.waitJobGone(ok.ID)
	e.waitJobGone(pull.ID)
	want := []string{
		"prefect_agent_flow_runs_submitted_total 2",
		`prefect_agent_submission_failures_total{stage="build"} 1`,
		`prefect_agent_job_problems_reported_total{reason="ErrImagePull"} 1`,
		`prefect_agent_jobs_deleted_total{why="gave-up"} 1`,
		`prefect_agent_jobs_deleted_total{why="completed"} 1`,
		"prefect_agent_poll_duration_seconds_count",
	}
	// A deletion is counted once its Delete returned, which can be just
	// after the Job is gone: read /metrics until every count is there.
	var missing []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, w := range missing {
		t.Errorf("/metrics lacks %q", w)
	}
}

func TestKeepFailedJobsKeepsOnlyFailedOnes(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	bad := e.schedule(imageRun(t, testbed.ImageExit1, nil))
	good := e.schedule(emulator.FlowRunSpec{})
	ra := e.start("", func(c *Config) { managed(true)(c); c.Manage.KeepFailedJobs = true })
	e.waitFailed(bad.ID, "exit code 1")
	e.waitJobGone(good.ID)
	// Kept once the agent looked at both Jobs again.
	e.resync(ra, bad.ID, good.ID)
	if len(e.jobsFor(bad.ID)) != 1 {
		t.Fatalf("the failed Job was deleted despite --keep-failed-jobs")
	}
}

// hasFailedCreate tells whether a FailedCreate event exists in the env's namespace.
func (e *env) hasFailedCreate() bool {
	events, err := cluster.Client.CoreV1().Events(e.ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=FailedCreate"})
	return err == nil && len(events.Items) > 0
}
