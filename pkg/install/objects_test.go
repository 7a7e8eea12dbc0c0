package install

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/memlimit"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
)

func TestDeploymentRunsTheLeanAgentWithRoomToStop(t *testing.T) {
	objs := Build(Spec{Name: "prefect-agent", Namespace: "ns", Image: "img", Replicas: 1, Args: []string{"--backend", "server"}, APIKey: "k"})
	pod := objs.Deployment.Spec.Template.Spec
	c := pod.Containers[0]
	if got := strings.Join(c.Command, " "); got != "/usr/local/bin/prefect-agent" {
		t.Fatalf("command %q, want the lean agent binary", got)
	}
	if got := strings.Join(c.Args, " "); got != "--agent-address :8080 --backend server --key-secret-name prefect-agent" {
		t.Fatalf("args %q", got)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 120 {
		t.Fatalf("terminationGracePeriodSeconds %v, want 120", pod.TerminationGracePeriodSeconds)
	}
	// The grace period must cover the agent's longest stop.
	if time.Duration(TerminationGracePeriodSeconds)*time.Second <= agent.MaxStop {
		t.Fatalf("grace period %d s does not exceed the agent's longest stop, %s", TerminationGracePeriodSeconds, agent.MaxStop)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
			env[*e.Name] = "resource:" + *e.ValueFrom.ResourceFieldRef.ContainerName + "/" + *e.ValueFrom.ResourceFieldRef.Resource
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[*e.Name] = "secret:" + *e.ValueFrom.SecretKeyRef.Name
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[*e.Name] = "field:" + *e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env[memlimit.ContainerLimitEnv] != "resource:agent/limits.memory" || *c.Name != "agent" || env["GOMEMLIMIT"] != "" {
		t.Fatalf("%s is not the agent container's memory limit: %v", memlimit.ContainerLimitEnv, env)
	}
	if env["PREFECT__CLOUD__API_KEY"] != "secret:prefect-agent" || env["NAMESPACE"] != "field:metadata.namespace" {
		t.Fatalf("env %v", env)
	}
	if req := (*c.Resources.Requests)[corev1.ResourceMemory]; req.String() != "128Mi" {
		t.Fatalf("memory request %s", req.String())
	}
}

func TestLeaseRuleOnlyWithReplicas(t *testing.T) {
	for _, replicas := range []int32{1, 3} {
		objs := Build(Spec{Name: "agent-x", Namespace: "ns", Image: "img", Replicas: replicas, RBAC: true})
		var lease []string
		for _, r := range objs.Role.Rules {
			if len(r.APIGroups) == 1 && r.APIGroups[0] == "coordination.k8s.io" {
				lease = append(lease, strings.Join(r.Verbs, ",")+" on "+strings.Join(r.ResourceNames, ","))
			}
		}
		args := strings.Join(objs.Deployment.Spec.Template.Spec.Containers[0].Args, " ")
		switch replicas {
		case 1:
			if len(lease) != 0 || strings.Contains(args, "--leader-elect") {
				t.Errorf("one replica: lease rules %v, args %s", lease, args)
			}
		default:
			if strings.Join(lease, "; ") != "create on ; get,update on agent-x" || !strings.Contains(args, "--leader-elect --lease-name agent-x") {
				t.Errorf("%d replicas: lease rules %v, args %s", replicas, lease, args)
			}
		}
	}
}
