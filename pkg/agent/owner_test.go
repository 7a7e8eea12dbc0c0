package agent

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// TestAgentsManageOnlyTheirOwnJobs: two agents of different labels share a
// namespace with a Job the 1.4.1 agent made and a Job an earlier version of
// the first agent made (no identity label). Each failure is reported once,
// by the agent whose Job it is (the earlier version's Job adopted by the
// first agent); the 1.4.1 agent's Job and its run are left untouched.
func TestAgentsManageOnlyTheirOwnJobs(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{})
	ctx := context.Background()
	oom := func(label string) emulator.FlowRunSpec {
		return emulator.FlowRunSpec{Labels: []string{label}, RunConfig: runConfig(t, map[string]any{"type": "KubernetesRun", "image": testbed.ImageOOM})}
	}
	// A run the 1.4.1 agent submitted, and its Job: Prefect's labels only.
	python := e.schedule(oom("py"))
	if _, err := e.em.SetFlowRunState(python.ID, "Submitted", "Submitted for execution"); err != nil {
		t.Fatal(err)
	}
	pyJob, _, err := manifest.BuildJob(ctx, manifest.AgentSettings{Namespace: e.ns, Backend: "server", API: e.api, Labels: []string{"py"}},
		manifest.FlowRun{ID: python.ID, Version: python.Version, FlowID: python.Flow.ID, CoreVersion: "1.4.1", RunConfig: python.RunConfig})
	if err != nil {
		t.Fatal(err)
	}
	delete(pyJob.Annotations, manifest.AnnotationFlowRunVersion)
	pyJob.Name = "prefect-job-1a2b3c4d"
	if _, err := cluster.Client.BatchV1().Jobs(e.ns).Create(ctx, pyJob, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A run an earlier version of agent A submitted, and its Job.
	earlier := e.schedule(oom("a"))
	if _, err := e.em.SetFlowRunState(earlier.ID, "Submitted", "Submitted for execution"); err != nil {
		t.Fatal(err)
	}
	oldJob, _, err := manifest.BuildJob(ctx, manifest.AgentSettings{Namespace: e.ns, Backend: "server", API: e.api, Labels: []string{"a"}},
		manifest.FlowRun{ID: earlier.ID, Version: earlier.Version, FlowID: earlier.Flow.ID, CoreVersion: "1.4.1", RunConfig: earlier.RunConfig})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client.BatchV1().Jobs(e.ns).Create(ctx, oldJob, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runA, runB := e.schedule(oom("a")), e.schedule(oom("b"))
	agentA := e.start("", func(c *Config) { c.Name = "agent-a"; c.Labels = []string{"a"}; c.Job.Labels = c.Labels })
	agentB := e.start("", func(c *Config) { c.Name = "agent-b"; c.Labels = []string{"b"}; c.Job.Labels = c.Labels })

	for id, by := range map[string]string{runA.ID: "agent-a", runB.ID: "agent-b", earlier.ID: "agent-a"} {
		run := e.waitState(id, "Failed") // the ERROR line is written first
		var errs []string
		for _, l := range run.Logs {
			if l.Level == "ERROR" {
				errs = append(errs, l.Name+": "+l.Message)
			}
		}
		if len(errs) != 1 || !strings.HasPrefix(errs[0], by+": ") {
			t.Errorf("run %s: ERROR lines %q, want one from %s", id, errs, by)
		}
	}
	eventually(t, "the 1.4.1 agent's pod to fail", func() bool {
		pods, _ := cluster.Client.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + python.ID})
		return len(pods.Items) > 0 && pods.Items[0].Status.Phase == "Failed"
	})
	job, err := cluster.Client.BatchV1().Jobs(e.ns).Get(ctx, pyJob.Name, metav1.GetOptions{})
	if err != nil || job.DeletionTimestamp != nil || job.Labels[manifest.LabelAgent] != "" || len(job.Annotations) != len(pyJob.Annotations) || len(job.Labels) != len(pyJob.Labels) {
		t.Fatalf("the 1.4.1 agent's Job was touched: %v, labels %v annotations %v", err, job.Labels, job.Annotations)
	}
	if run, _ := e.em.FlowRun(python.ID); run.State != "Submitted" || len(run.Logs) != 0 {
		t.Fatalf("the 1.4.1 agent's run was touched: %s, %d log lines", run.State, len(run.Logs))
	}
	for name, ra := range map[string]*runningAgent{"agent-a": agentA, "agent-b": agentB} {
		if log := ra.logs.String(); !strings.Contains(log, `"Managing only this agent's Jobs"`) || strings.Contains(log, "othersLeftAlone=0") {
			t.Errorf("%s did not say how many Jobs of others it leaves:\n%s", name, log)
		}
	}
}

// TestAgentIdentity: one identity per name and label set (in any order),
// always a valid label value, readable by its name.
func TestAgentIdentity(t *testing.T) {
	a := AgentIdentity("agent", []string{"k8s", "prod"})
	if b := AgentIdentity("agent", []string{"prod", "k8s"}); a != b {
		t.Fatalf("label order changed the identity: %s, %s", a, b)
	}
	if b := AgentIdentity("agent", []string{"k8s"}); a == b {
		t.Fatalf("different labels, same identity %s", a)
	}
	if !strings.HasPrefix(a, "agent-") {
		t.Fatalf("identity %s does not start with the name", a)
	}
	for _, name := range []string{"agent", "My Agent!", strings.Repeat("x", 100), "---", ""} {
		id := AgentIdentity(name, nil)
		if errs := validation.IsValidLabelValue(id); len(errs) > 0 {
			t.Errorf("AgentIdentity(%q) = %q is not a label value: %v", name, id, errs)
		}
	}
}
