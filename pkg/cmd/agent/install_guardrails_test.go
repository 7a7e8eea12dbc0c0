package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// TestInstalledAgentsJobsCarryNoKey: the installed agent, started with the
// Deployment's arguments and the key its Secret gives it, builds flow Jobs
// that read the key from that Secret: no Job carries the value. The
// guardrail flags given to install reach the installed agent.
func TestInstalledAgentsJobsCarryNoKey(t *testing.T) {
	stdout, _, err := runInstallWithStdin(t, "", "-n", "flows", "--dry-run=client", "-o", "json", "-k", testKey, "-l", "k8s",
		"--limit", "label=gpu:2", "--limit", "10", "--max-run-time", "6h")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatal(err)
	}
	var deployment *appsv1.Deployment
	for _, item := range list.Items {
		var d appsv1.Deployment
		if err := json.Unmarshal(item, &d); err == nil && d.Kind == "Deployment" {
			deployment = &d
		}
	}
	if deployment == nil {
		t.Fatalf("no Deployment in:\n%s", stdout)
	}
	c := deployment.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--key-secret-name prefect-agent", "--limit=label=gpu:2,10", "--max-run-time=6h0m0s"} {
		if !strings.Contains(args, want) {
			t.Fatalf("the installed agent's arguments %q lack %q", args, want)
		}
	}
	// The installed agent: its arguments, and the key as its Secret gives it.
	clearAgentEnv(t)
	t.Setenv("PREFECT__CLOUD__API_KEY", testKey)
	o := agentcli.NewStartOptions()
	fs := pflag.NewFlagSet("prefect-agent", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(c.Args); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(fs); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	settings := o.Settings.ToSettings("flows")
	settings.MaxRunTime = o.Guardrails.MaxRunTime
	job, _, err := manifest.BuildJob(context.Background(), settings, manifest.FlowRun{ID: "run-1", Version: 1, FlowID: "flow-1", RunConfig: []byte(`{"type": "KubernetesRun"}`)})
	if err != nil {
		t.Fatal(err)
	}
	fromSecret := 0
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		if strings.Contains(e.Value, testKey) {
			t.Fatalf("the Job carries the key in %s", e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "prefect-agent" && e.ValueFrom.SecretKeyRef.Key == manifest.APIKeySecretKey {
			fromSecret++
		}
	}
	if fromSecret == 0 {
		t.Fatalf("the Job does not read the key from the install's Secret: %+v", job.Spec.Template.Spec.Containers[0].Env)
	}
	if d := job.Spec.ActiveDeadlineSeconds; d == nil || *d != 6*3600 {
		t.Fatalf("the Job's activeDeadlineSeconds is %v, want 21600", d)
	}
}
