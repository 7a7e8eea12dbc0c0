package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// failingCreates is a clientset whose Job creates all fail with err.
func failingCreates(err error) *fake.Clientset {
	kube := fake.NewClientset()
	kube.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, err })
	return kube
}

var jobsResource = schema.GroupResource{Group: "batch", Resource: "jobs"}

func TestUnreachableKubernetesHandsTheRunBackToScheduled(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	run := e.schedule(emulator.FlowRunSpec{ScheduledStartTime: start})
	e.start("", func(c *Config) {
		c.Kube = failingCreates(apierrors.NewServiceUnavailable("etcd is down"))
		c.CreateRetryFor = time.Second
		c.MaxPolls = 1
	})
	var got emulator.FlowRun
	eventually(t, "the run to be back in Scheduled", func() bool {
		got, _ = e.em.FlowRun(run.ID)
		return got.State == "Scheduled" && len(got.States) == 3
	})
	if s, ok := prefect.StateStartTime(got.SerializedState); !ok || !s.Equal(start) {
		t.Fatalf("rescheduled with start time %v, want the original %v", s, start)
	}
	if w := logsAt(got, "WARNING"); len(w) != 1 || !strings.Contains(w[0], "the run goes back to Scheduled") || !strings.Contains(w[0], "etcd is down") {
		t.Fatalf("WARNING lines %q", w)
	}
	if len(logsAt(got, "ERROR")) != 0 {
		t.Fatalf("a transient Kubernetes error failed the run: %q", logsAt(got, "ERROR"))
	}
}

func TestRefusedJobFailsTheRun(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{})
	e.start("", func(c *Config) {
		c.Kube = failingCreates(apierrors.NewForbidden(jobsResource, "", nil))
		c.MaxPolls = 1
	})
	got := e.waitState(run.ID, "Failed")
	if errs := logsAt(got, "ERROR"); len(errs) != 1 || !strings.Contains(errs[0], "Kubernetes refused the flow run's Job") {
		t.Fatalf("ERROR lines %q", errs)
	}
}

func TestStopHurriesACreateThatKeepsFailing(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{})
	ra := e.start("", func(c *Config) {
		c.Kube = failingCreates(apierrors.NewTooManyRequests("slow down", 1))
		c.ShutdownTimeout = 200 * time.Millisecond
	})
	e.waitState(run.ID, "Submitted")
	began := time.Now()
	ra.halt(t)
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("the stop took %s", took)
	}
	// Stopped without cutting the submission: the run went back to Scheduled
	// on a fresh context, not left Submitted without a Job.
	got, _ := e.em.FlowRun(run.ID)
	if got.State != "Scheduled" || len(logsAt(got, "WARNING")) != 1 {
		t.Fatalf("after the stop: %s, logs %+v", got.State, got.Logs)
	}
}

func TestLeaseIsReleasedOnlyAfterTheWorkEnded(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	run := e.schedule(emulator.FlowRunSpec{})
	kube := failingCreates(apierrors.NewTooManyRequests("slow down", 1))
	ra := e.start("", func(c *Config) {
		c.Kube = kube
		c.ShutdownTimeout = time.Second
		c.LeaderElection = &LeaderElection{LeaseName: "agent", Namespace: e.ns, Identity: "replica-1",
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
	})
	e.waitState(run.ID, "Submitted")
	lease := func() (holder string, renewed time.Time) {
		l, err := kube.CoordinationV1().Leases(e.ns).Get(context.Background(), "agent", metav1.GetOptions{})
		if err != nil {
			return "", time.Time{}
		}
		if l.Spec.RenewTime != nil {
			renewed = l.Spec.RenewTime.Time
		}
		if l.Spec.HolderIdentity == nil {
			return "", renewed
		}
		return *l.Spec.HolderIdentity, renewed
	}
	holder := func() string { h, _ := lease(); return h }
	stopped := time.Now()
	ra.stop()
	// The submission retries its Job for the 1 s ShutdownTimeout. Meanwhile
	// the elector renews the Lease every 0.2 s, or releases it: wait for a
	// renewal 0.4 s after the stop, or the release.
	eventually(t, "the Lease to be renewed after the stop, or released", func() bool {
		h, renewed := lease()
		return h == "" || renewed.After(stopped.Add(400*time.Millisecond))
	})
	if h := holder(); h != "replica-1" {
		t.Fatalf("the Lease is held by %q while the stopped leader still submits", h)
	}
	ra.halt(t)
	if h := holder(); h != "" {
		t.Fatalf("the Lease is still held by %q after the agent stopped", h)
	}
	if got, _ := e.em.FlowRun(run.ID); got.State != "Scheduled" {
		t.Fatalf("the run is %s after the stop, want back in Scheduled", got.State)
	}
}
