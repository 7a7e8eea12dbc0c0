package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/memlimit"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

const testKey = "pcu_install_SECRET_4711"

func runInstall(t *testing.T, ns string, extra ...string) (string, string, error) {
	t.Helper()
	clearAgentEnv(t)
	args := append([]string{"install", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "--rbac", "-k", testKey,
		"--backend", "server", "--api", "http://prefect-server:4200", "-l", "k8s", "--image", "example.com/kubectl-prefect:test"}, extra...)
	return runCommand(t, args...)
}

func versions(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	d, err1 := cluster.Client.AppsV1().Deployments(ns).Get(ctx, "prefect-agent", metav1.GetOptions{})
	s, err2 := cluster.Client.CoreV1().Secrets(ns).Get(ctx, "prefect-agent", metav1.GetOptions{})
	sa, err3 := cluster.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "prefect-agent", metav1.GetOptions{})
	r, err4 := cluster.Client.RbacV1().Roles(ns).Get(ctx, "prefect-agent", metav1.GetOptions{})
	rb, err5 := cluster.Client.RbacV1().RoleBindings(ns).Get(ctx, "prefect-agent", metav1.GetOptions{})
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The Deployment's status moves on its own; its generation counts spec changes.
	return strings.Join([]string{fmt.Sprint(d.Generation), s.ResourceVersion, sa.ResourceVersion, r.ResourceVersion, rb.ResourceVersion}, ",")
}

func TestInstallIntoRestrictedNamespace(t *testing.T) {
	ns := cluster.Namespace(t, "pod-security.kubernetes.io/enforce", "restricted")
	// Pod Security admission is on: a pod that may run as root is refused here.
	loose := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "loose"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := cluster.Client.CoreV1().Pods(ns).Create(context.Background(), loose, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a pod breaking the restricted profile was not refused: %v", err)
	}
	stdout, stderr, err := runInstall(t, ns)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, stderr)
	}
	want := `serviceaccount/prefect-agent serverside-applied
secret/prefect-agent serverside-applied
role.rbac.authorization.k8s.io/prefect-agent serverside-applied
rolebinding.rbac.authorization.k8s.io/prefect-agent serverside-applied
deployment.apps/prefect-agent serverside-applied
`
	if stdout != want {
		t.Fatalf("install printed:\n%s\nwant:\n%s", stdout, want)
	}
	if strings.Contains(stdout+stderr, testKey) {
		t.Fatal("install printed the API key")
	}
	testbed.Eventually(t, "the agent's pod to be admitted", func() bool {
		pods, _ := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=prefect-agent"})
		return len(pods.Items) == 1
	})
	ctx := context.Background()
	d, _ := cluster.Client.AppsV1().Deployments(ns).Get(ctx, "prefect-agent", metav1.GetOptions{})
	raw, _ := json.Marshal(d)
	if strings.Contains(string(raw), testKey) {
		t.Fatal("the API key is in the Deployment")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/livez" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Fatalf("probes: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if got := strings.Join(c.Command, " "); got != "/usr/local/bin/prefect-agent" {
		t.Fatalf("the agent container runs %q, want the lean agent binary", got)
	}
	if got := strings.Join(c.Args, " "); got != "--agent-address :8080 --backend server --api http://prefect-server:4200 --agent-name agent --label k8s --key-secret-name prefect-agent" {
		t.Fatalf("agent args: %s", got)
	}
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 120 {
		t.Fatalf("terminationGracePeriodSeconds = %v, want 120 (the agent's longest stop, 100 s, and a margin)", g)
	}
	if req := c.Resources.Requests[corev1.ResourceMemory]; req.Cmp(resource.MustParse("128Mi")) != 0 {
		t.Fatalf("memory request %s, want 128Mi", req.String())
	}
	var memLimitEnv *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == memlimit.ContainerLimitEnv {
			memLimitEnv = &c.Env[i]
		}
	}
	if memLimitEnv == nil || memLimitEnv.ValueFrom == nil || memLimitEnv.ValueFrom.ResourceFieldRef == nil ||
		memLimitEnv.ValueFrom.ResourceFieldRef.Resource != "limits.memory" || memLimitEnv.ValueFrom.ResourceFieldRef.ContainerName != c.Name {
		t.Fatalf("%s does not come from the container's memory limit: %+v", memlimit.ContainerLimitEnv, memLimitEnv)
	}
	for _, e := range c.Env {
		if e.Name == "PREFECT__CLOUD__API_KEY" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != "prefect-agent") {
			t.Fatalf("the key is not read from the Secret: %+v", e)
		}
	}
	s, _ := cluster.Client.CoreV1().Secrets(ns).Get(ctx, "prefect-agent", metav1.GetOptions{})
	if string(s.Data[manifest.APIKeySecretKey]) != testKey {
		t.Fatal("the Secret does not hold the key")
	}

	before := versions(t, ns)
	if _, stderr, err := runInstall(t, ns); err != nil {
		t.Fatalf("second install: %v %s", err, stderr)
	}
	if after := versions(t, ns); after != before {
		t.Fatalf("a second install changed objects: %s -> %s", before, after)
	}
}

func TestInstallConflictsAndForce(t *testing.T) {
	ns := cluster.Namespace(t)
	if _, stderr, err := runInstall(t, ns); err != nil {
		t.Fatalf("install: %v %s", err, stderr)
	}
	other := appsv1ac.Deployment("prefect-agent", ns).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(3))
	if _, err := cluster.Client.AppsV1().Deployments(ns).Apply(context.Background(), other, metav1.ApplyOptions{FieldManager: "someone-else", Force: true}); err != nil {
		t.Fatal(err)
	}
	_, _, err := runInstall(t, ns)
	if err == nil || !strings.Contains(err.Error(), `conflict with "someone-else"`) || !strings.Contains(err.Error(), ".spec.replicas") || !strings.Contains(err.Error(), "--force-conflicts") {
		t.Fatalf("want a conflict naming the other manager, the field and --force-conflicts; got %v", err)
	}
	if _, stderr, err := runInstall(t, ns, "--force-conflicts"); err != nil {
		t.Fatalf("install --force-conflicts: %v %s", err, stderr)
	}
	d, _ := cluster.Client.AppsV1().Deployments(ns).Get(context.Background(), "prefect-agent", metav1.GetOptions{})
	if *d.Spec.Replicas != 1 {
		t.Fatalf("replicas %d after --force-conflicts", *d.Spec.Replicas)
	}
}

func TestDryRunOutputAppliesToTheSameObjects(t *testing.T) {
	viaInstall, viaKubectl := cluster.Namespace(t), cluster.Namespace(t)
	if _, stderr, err := runInstall(t, viaInstall); err != nil {
		t.Fatalf("install: %v %s", err, stderr)
	}
	manifestYAML, _, err := runInstall(t, viaKubectl, "--dry-run=client", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := cluster.Kubectl(context.Background(), []byte(manifestYAML), "apply", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, errOut)
	}
	if strings.Count(string(out), "created") != 5 {
		t.Fatalf("kubectl apply printed:\n%s", out)
	}
	spec := func(ns string) string {
		d, err := cluster.Client.AppsV1().Deployments(ns).Get(context.Background(), "prefect-agent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(d.Spec)
		return string(raw)
	}
	if a, b := spec(viaInstall), spec(viaKubectl); a != b {
		t.Fatalf("the Deployments differ:\ninstall: %s\nkubectl: %s", a, b)
	}
	roles := func(ns string) string {
		r, err := cluster.Client.RbacV1().Roles(ns).Get(context.Background(), "prefect-agent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(r.Rules)
		return string(raw)
	}
	if roles(viaInstall) != roles(viaKubectl) {
		t.Fatal("the Roles differ")
	}
	stdout, _, err := runInstall(t, cluster.Namespace(t), "--dry-run=server")
	if err != nil || !strings.Contains(stdout, "deployment.apps/prefect-agent serverside-applied (server dry run)") {
		t.Fatalf("--dry-run=server: %v\n%s", err, stdout)
	}
}

// access is one SubjectAccessReview: may the installed agent do verb on resource?
type access struct {
	group, resource, name, verb, namespace string
	allowed                                bool
}

func checkAccess(t *testing.T, ns string, cases []access) {
	t.Helper()
	user := fmt.Sprintf("system:serviceaccount:%s:prefect-agent", ns)
	for _, tc := range cases {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Group: tc.group, Resource: tc.resource, Name: tc.name,
				Verb: tc.verb, Namespace: tc.namespace}}}
		got, err := cluster.Client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), review, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != tc.allowed {
			t.Errorf("%s %s.%s %q in %s: allowed=%v, want %v", tc.verb, tc.resource, tc.group, tc.name, tc.namespace, got.Status.Allowed, tc.allowed)
		}
	}
}

func TestInstalledServiceAccountMayDoOnlyWhatTheAgentDoes(t *testing.T) {
	ns := cluster.Namespace(t)
	if _, stderr, err := runInstall(t, ns); err != nil {
		t.Fatalf("install: %v %s", err, stderr)
	}
	checkAccess(t, ns, []access{
		{"batch", "jobs", "", "create", ns, true},
		{"batch", "jobs", "", "watch", ns, true},
		{"batch", "jobs", "", "patch", ns, true},
		{"batch", "jobs", "", "delete", ns, true},
		{"", "pods", "", "list", ns, true},
		{"", "events", "", "watch", ns, true},
		{"", "pods", "", "get", ns, false},
		{"", "events", "", "get", ns, false},
		{"", "secrets", "", "get", ns, false},
		{"", "pods", "", "create", ns, false},
		{"batch", "jobs", "", "update", ns, false},
		{"batch", "jobs", "", "create", "default", false},
		// One replica elects no leader, so it gets no Lease at all.
		{"coordination.k8s.io", "leases", "prefect-agent", "get", ns, false},
		{"coordination.k8s.io", "leases", "", "create", ns, false},
	})
}

func TestLeaseRuleOnlyForReplicasAndOnlyTheAgentsLease(t *testing.T) {
	ns := cluster.Namespace(t)
	if _, stderr, err := runInstall(t, ns, "--replicas", "2"); err != nil {
		t.Fatalf("install: %v %s", err, stderr)
	}
	checkAccess(t, ns, []access{
		{"coordination.k8s.io", "leases", "prefect-agent", "get", ns, true},
		{"coordination.k8s.io", "leases", "prefect-agent", "update", ns, true},
		{"coordination.k8s.io", "leases", "", "create", ns, true},
		{"coordination.k8s.io", "leases", "kube-scheduler", "get", ns, false},
		{"coordination.k8s.io", "leases", "someone-else", "update", ns, false},
		{"coordination.k8s.io", "leases", "", "list", ns, false},
		{"coordination.k8s.io", "leases", "prefect-agent", "delete", ns, false},
	})
	d, err := cluster.Client.AppsV1().Deployments(ns).Get(context.Background(), "prefect-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(got, "--leader-elect --lease-name prefect-agent") {
		t.Fatalf("two replicas do not elect a leader with the Lease the Role names: %s", got)
	}
	// Back to one replica: the Lease rule goes away with the next apply.
	if _, stderr, err := runInstall(t, ns, "--replicas", "1"); err != nil {
		t.Fatalf("install: %v %s", err, stderr)
	}
	checkAccess(t, ns, []access{{"coordination.k8s.io", "leases", "prefect-agent", "update", ns, false}})
}

// runInstallWithStdin runs install with the given stdin.
func runInstallWithStdin(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	clearAgentEnv(t)
	streams, in, out, errOut := genericiooptions.NewTestIOStreams()
	in.WriteString(stdin)
	configFlags := genericclioptions.NewConfigFlags(true)
	cmd := NewCmdAgent(configFlags, streams)
	configFlags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs(append([]string{"install", "--backend", "server", "--api", "http://prefect-server:4200",
		"--image", "example.com/kubectl-prefect:test"}, args...))
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestInstallReadsTheKeyFromAFileOrStdin(t *testing.T) {
	cluster.Require(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stdin string
		args        []string
	}{
		{"key file", "", []string{"--key-file", keyFile}},
		{"stdin", testKey + "\n", []string{"-k", "-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := cluster.Namespace(t)
			stdout, stderr, err := runInstallWithStdin(t, tc.stdin, append([]string{"--kubeconfig", cluster.Kubeconfig, "-n", ns}, tc.args...)...)
			if err != nil {
				t.Fatalf("install: %v\n%s", err, stderr)
			}
			if strings.Contains(stdout+stderr, testKey) {
				t.Fatal("install printed the API key")
			}
			s, err := cluster.Client.CoreV1().Secrets(ns).Get(context.Background(), "prefect-agent", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(s.Data[manifest.APIKeySecretKey]); got != testKey {
				t.Fatalf("the Secret holds %q, want the key without its newline", got)
			}
		})
	}
}

func TestInstallKeyInputErrorsNameTheFlagNotTheKey(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	twoLines := filepath.Join(dir, "two-lines")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	_ = os.WriteFile(twoLines, []byte(testKey+"\nsecond line\n"), 0o600)
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"both", "", []string{"-k", testKey, "--key-file", empty}, "--key and --key-file both give the API key: use one"},
		{"missing file", "", []string{"--key-file", filepath.Join(dir, "nope")}, "reading the API key from --key-file " + filepath.Join(dir, "nope")},
		{"empty file", "", []string{"--key-file", empty}, "--key-file " + empty + ": no API key in it"},
		{"two lines", "", []string{"--key-file", twoLines}, "--key-file " + twoLines + ": expected the API key alone on one line"},
		{"empty stdin", "", []string{"-k", "-"}, "-k - (stdin): no API key in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runInstallWithStdin(t, tc.stdin, append([]string{"-n", "default", "--dry-run=client"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}

func TestUninstallLeavesNothing(t *testing.T) {
	ns := cluster.Namespace(t)
	if _, stderr, err := runInstall(t, ns); err != nil {
		t.Fatalf("install: %v %s", err, stderr)
	}
	stdout, _, err := runCommand(t, "uninstall", "--kubeconfig", cluster.Kubeconfig, "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`deployment.apps "prefect-agent" deleted`, `secret "prefect-agent" deleted`, `serviceaccount "prefect-agent" deleted`, `role.rbac.authorization.k8s.io "prefect-agent" deleted`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("uninstall output lacks %q:\n%s", want, stdout)
		}
	}
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=kubectl-prefect"}
	testbed.Eventually(t, "everything to be gone", func() bool {
		ctx := context.Background()
		d, _ := cluster.Client.AppsV1().Deployments(ns).List(ctx, sel)
		s, _ := cluster.Client.CoreV1().Secrets(ns).List(ctx, sel)
		sa, _ := cluster.Client.CoreV1().ServiceAccounts(ns).List(ctx, sel)
		r, _ := cluster.Client.RbacV1().Roles(ns).List(ctx, sel)
		rb, _ := cluster.Client.RbacV1().RoleBindings(ns).List(ctx, sel)
		rs, _ := cluster.Client.AppsV1().ReplicaSets(ns).List(ctx, sel)
		return len(d.Items)+len(s.Items)+len(sa.Items)+len(r.Items)+len(rb.Items)+len(rs.Items) == 0
	})
}
