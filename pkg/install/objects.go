// Package install builds the objects `kubectl prefect agent install` applies:
// the agent's ServiceAccount, Secret, template ConfigMap, Role, RoleBinding
// and Deployment. The agent itself never links it.
package install

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/memlimit"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// Spec describes an agent installation.
type Spec struct {
	// Name names every object (default prefect-agent); Namespace holds them.
	Name, Namespace string
	// Image is the agent's own image.
	Image string
	// Replicas above 1 turn leader election on.
	Replicas int32
	// Args are the agent's flags (without the key), as `agent start` takes them.
	Args []string
	// APIKey, when set, goes into a Secret that the agent and its Jobs read.
	APIKey string
	// JobTemplate, when set, is a local template shipped in a ConfigMap.
	JobTemplate []byte
	// ImagePullSecrets for the agent's own pod.
	ImagePullSecrets []string
	// RBAC adds a Role and RoleBinding granting exactly what the agent uses.
	RBAC bool
}

// Where the agent finds what install gives it.
const (
	HealthPort          = 8080
	JobTemplateKey      = "job-template.yaml"
	JobTemplateMountDir = "/etc/kubectl-prefect"
	// AgentBinary is the lean agent binary in the agent's image (cmd/prefect-agent).
	AgentBinary = "/usr/local/bin/prefect-agent"
)

// TerminationGracePeriodSeconds is the agent pod's grace period: the
// longest stop of the agent (agent.MaxStop: in-flight submissions, then a
// hurried end, a last report, the Lease's release) and a margin. The
// kubelet's default of 30 s would SIGKILL it in the middle.
const TerminationGracePeriodSeconds = int64((agent.MaxStop + 20*time.Second) / time.Second)

// The agent container's resources. The request covers the working set
// measured with `make bench` (README, Benchmarks); the limit leaves room for
// tens of thousands of managed Jobs. The limit also reaches the agent, which
// gives 90% of it to the Go runtime as its memory limit, so the garbage
// collector works harder before the OOM killer acts.
var (
	MemoryRequest = resource.MustParse("128Mi")
	MemoryLimit   = resource.MustParse("512Mi")
	CPURequest    = resource.MustParse("50m")
	CPULimit      = resource.MustParse("1")
)

// Labels mark every object of an installation, so it can be found and removed.
func Labels(name string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       "prefect-agent",
		"app.kubernetes.io/instance":   name,
		"app.kubernetes.io/managed-by": "kubectl-prefect",
	}
}

// Objects are the apply configurations of an installation, in the order
// they are applied.
type Objects struct {
	ServiceAccount *corev1ac.ServiceAccountApplyConfiguration
	Secret         *corev1ac.SecretApplyConfiguration
	ConfigMap      *corev1ac.ConfigMapApplyConfiguration
	Role           *rbacv1ac.RoleApplyConfiguration
	RoleBinding    *rbacv1ac.RoleBindingApplyConfiguration
	Deployment     *appsv1ac.DeploymentApplyConfiguration
}

// Build makes the objects of an installation.
func Build(in Spec) Objects {
	labels := Labels(in.Name)
	var out Objects
	out.ServiceAccount = corev1ac.ServiceAccount(in.Name, in.Namespace).WithLabels(labels)
	args := append([]string{"--agent-address", fmt.Sprintf(":%d", HealthPort)}, in.Args...)
	container := corev1ac.Container().WithName(containerName).WithImage(in.Image).WithCommand(AgentBinary).
		WithPorts(corev1ac.ContainerPort().WithName("http").WithContainerPort(HealthPort)).
		WithEnv(
			corev1ac.EnvVar().WithName("NAMESPACE").WithValueFrom(corev1ac.EnvVarSource().WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath("metadata.namespace"))),
			corev1ac.EnvVar().WithName(memlimit.ContainerLimitEnv).WithValueFrom(corev1ac.EnvVarSource().WithResourceFieldRef(corev1ac.ResourceFieldSelector().WithContainerName(containerName).WithResource("limits.memory"))),
		).
		// Liveness: the agent's loops turn (a pod waiting for the Prefect
		// API or in a long back-off is alive); readiness: connected,
		// permitted and polling, checked often so a returning API shows soon.
		WithLivenessProbe(probe(LivenessPath, 10, 20, 3)).
		WithReadinessProbe(probe(ReadinessPath, 2, 5, 2)).
		WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: CPURequest, corev1.ResourceMemory: MemoryRequest}).
			WithLimits(corev1.ResourceList{corev1.ResourceCPU: CPULimit, corev1.ResourceMemory: MemoryLimit})).
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsNonRoot(true).WithReadOnlyRootFilesystem(true).WithAllowPrivilegeEscalation(false).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))
	if in.APIKey != "" {
		out.Secret = corev1ac.Secret(in.Name, in.Namespace).WithLabels(labels).WithType(corev1.SecretTypeOpaque).
			WithData(map[string][]byte{manifest.APIKeySecretKey: []byte(in.APIKey)})
		container.WithEnv(corev1ac.EnvVar().WithName("PREFECT__CLOUD__API_KEY").WithValueFrom(corev1ac.EnvVarSource().
			WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(in.Name).WithKey(manifest.APIKeySecretKey))))
		args = append(args, "--key-secret-name", in.Name)
	}
	pod := corev1ac.PodSpec().WithServiceAccountName(in.Name).
		WithTerminationGracePeriodSeconds(TerminationGracePeriodSeconds).
		WithSecurityContext(corev1ac.PodSecurityContext().WithRunAsNonRoot(true).WithRunAsUser(65532).WithRunAsGroup(65532).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))
	if len(in.JobTemplate) > 0 {
		out.ConfigMap = corev1ac.ConfigMap(in.Name+"-job-template", in.Namespace).WithLabels(labels).
			WithData(map[string]string{JobTemplateKey: string(in.JobTemplate)})
		container.WithVolumeMounts(corev1ac.VolumeMount().WithName("job-template").WithMountPath(JobTemplateMountDir).WithReadOnly(true))
		pod.WithVolumes(corev1ac.Volume().WithName("job-template").WithConfigMap(corev1ac.ConfigMapVolumeSource().WithName(in.Name + "-job-template")))
		args = append(args, "--job-template", JobTemplateMountDir+"/"+JobTemplateKey)
	}
	if leaderElection(in) {
		args = append(args, "--leader-elect", "--lease-name", in.Name)
	}
	container.Args = args
	for _, s := range in.ImagePullSecrets {
		pod.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(s))
	}
	pod.WithContainers(container)
	out.Deployment = appsv1ac.Deployment(in.Name, in.Namespace).WithLabels(labels).
		WithSpec(appsv1ac.DeploymentSpec().WithReplicas(in.Replicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(labels)).
			WithStrategy(appsv1ac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType)).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels).WithSpec(pod)))
	if in.RBAC {
		// Exactly what the agent checks for at start (pkg/agent's list): with
		// leader election, its own Lease only (create cannot name one).
		lease := ""
		if leaderElection(in) {
			lease = in.Name
		}
		out.Role = rbacv1ac.Role(in.Name, in.Namespace).WithLabels(labels)
		for _, p := range agent.RequiredPermissions(lease) {
			rule := rbacv1ac.PolicyRule().WithAPIGroups(p.Group).WithResources(p.Resource).WithVerbs(p.Verbs...)
			if p.ResourceName != "" {
				rule.WithResourceNames(p.ResourceName)
			}
			out.Role.WithRules(rule)
		}
		out.RoleBinding = rbacv1ac.RoleBinding(in.Name, in.Namespace).WithLabels(labels).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Role").WithName(in.Name)).
			WithSubjects(rbacv1ac.Subject().WithKind("ServiceAccount").WithName(in.Name).WithNamespace(in.Namespace))
	}
	return out
}

// containerName names the agent's container.
const containerName = "agent"

// leaderElection: replicas above 1 elect a leader with a Lease named like the installation.
func leaderElection(in Spec) bool { return in.Replicas > 1 }

// The agent's probe paths (pkg/agent/probes.go).
const (
	LivenessPath  = "/livez"
	ReadinessPath = "/readyz"
)

func probe(path string, initialDelay, period, failures int32) *corev1ac.ProbeApplyConfiguration {
	return corev1ac.Probe().WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString("http"))).
		WithInitialDelaySeconds(initialDelay).WithPeriodSeconds(period).WithFailureThreshold(failures)
}
