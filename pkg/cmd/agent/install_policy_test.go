package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
)

// TestInstallForwardsThePolicyAndTemplateFlagsGiven checks that the pending
// policy and template flags given to install reach the installed agent, in a
// form the agent accepts, and that flags left alone are not pinned.
func TestInstallForwardsThePolicyAndTemplateFlagsGiven(t *testing.T) {
	ns := cluster.Namespace(t)
	_, stderr, err := runInstall(t, ns, "--image-pull-grace", "30s", "--quota-timeout", "0",
		"--allowed-template-locations", "https://templates.example.com/flows/,s3://flow-templates/", "--strict-templates")
	if err != nil {
		t.Fatalf("install: %v\n%s", err, stderr)
	}
	d, err := cluster.Client.AppsV1().Deployments(ns).Get(context.Background(), "prefect-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	joined := strings.Join(args, " ")
	for _, want := range []string{"--image-pull-grace=30s", "--quota-timeout=0s",
		"--allowed-template-locations=https://templates.example.com/flows/,s3://flow-templates/", "--strict-templates=true"} {
		if !strings.Contains(joined, want) {
			t.Errorf("the Deployment's args lack %s: %s", want, joined)
		}
	}
	for _, unset := range []string{"--scale-up-timeout", "--unschedulable-timeout", "--admission-timeout"} {
		if strings.Contains(joined, unset) {
			t.Errorf("the Deployment pins %s, which was not given: %s", unset, joined)
		}
	}
	// The installed agent takes these arguments as they are.
	o := agentcli.NewStartOptions()
	fs := pflag.NewFlagSet("prefect-agent", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("the agent refuses the installed arguments %q: %v", joined, err)
	}
	if err := o.Complete(fs); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("the installed arguments do not validate: %v", err)
	}
	if o.Pending.Policy.ImagePullGrace.String() != "30s" || o.Pending.Policy.QuotaTimeout != 0 || !o.Templates.StrictTemplates {
		t.Fatalf("the agent reads %+v, strict %v", o.Pending.Policy, o.Templates.StrictTemplates)
	}
}
