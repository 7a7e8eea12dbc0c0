package prefectaccess

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/install"
)

var cluster *testbed.Cluster

func TestMain(m *testing.M) { os.Exit(testbed.Run(m, &cluster)) }

const (
	theKey    = "pk_the-secret-api-key-0123456789"
	theTenant = "3f1c2a4e-8b6d-4f0a-9c7e-1d2b3a4c5d6e"
)

// cloud is a Prefect Cloud emulator that accepts theKey only.
func cloud(t *testing.T) string {
	t.Helper()
	em, err := emulator.New(emulator.Config{Backend: emulator.Cloud, Tenants: []emulator.Tenant{{ID: theTenant, Name: "t", Slug: "t"}},
		APIKeys: map[string]string{theKey: theTenant}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func parse(t *testing.T, args ...string) *Flags {
	t.Helper()
	return parseInto(t, &Flags{}, args...)
}

func parseInto(t *testing.T, f *Flags, args ...string) *Flags {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFlagsAndEnvironment(t *testing.T) {
	api := cloud(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(theKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := parse(t, "--api", api, "--backend", "cloud", "--key-file", keyFile, "--agent-name", "k8s").Resolve(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx); err != nil {
		t.Fatalf("the key from --key-file was not sent: %v", err)
	}
	if a.TenantID != theTenant || a.AgentName != "k8s" || a.From != "flags and environment" {
		t.Fatalf("resolved %+v", a)
	}

	t.Setenv("PREFECT__CLOUD__API", api)
	t.Setenv("PREFECT__BACKEND", "cloud")
	t.Setenv("PREFECT__CLOUD__API_KEY", theKey)
	t.Setenv("PREFECT__CLOUD__AGENT__NAME", "from-env")
	a, err = parse(t).Resolve(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx); err != nil || a.AgentName != "from-env" || !a.HasKey() {
		t.Fatalf("from the environment: %+v, %v", a, err)
	}
	// A flag wins over its variable; a wrong key is refused without being shown.
	a, err = parse(t, "--key", "pk_wrong-key-9876543210").Resolve(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Connect(ctx)
	if err == nil || strings.Contains(err.Error(), "pk_wrong") || strings.Contains(err.Error(), theKey) {
		t.Fatalf("a wrong key: %v", err)
	}

	for args, want := range map[string]string{
		"--key x --key-file " + keyFile: "--key and --key-file both give the API key",
		"--backend nimbus":              `--backend "nimbus": expected server or cloud`,
	} {
		if _, err := parse(t, strings.Fields(args)...).Resolve(ctx, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
	t.Setenv("PREFECT__CLOUD__API", "")
	if _, err := parse(t).Resolve(ctx, nil); err == nil || !strings.Contains(err.Error(), "pass --api") {
		t.Errorf("nothing given and no agent: %v", err)
	}
}

// install applies what `agent install` makes, with the key in a Secret.
func installAgent(t *testing.T, ns, api string, labels ...string) {
	t.Helper()
	settings := agentcli.SettingsFlags{Backend: "cloud", API: api, AgentName: "nightly", TenantID: theTenant, Labels: labels}
	objs := install.Build(install.Spec{Name: "prefect-agent", Namespace: ns, Image: "example/agent:1", Replicas: 1, APIKey: theKey, Args: settings.Args(false)})
	ctx := context.Background()
	opts := metav1.ApplyOptions{FieldManager: "test", Force: true}
	if _, err := cluster.Client.CoreV1().Secrets(ns).Apply(ctx, objs.Secret, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client.AppsV1().Deployments(ns).Apply(ctx, objs.Deployment, opts); err != nil {
		t.Fatal(err)
	}
}

// as is a client acting as a user who may read Deployments but not Secrets.
func as(t *testing.T, ns, user string) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list"}},
	}}
	if _, err := cluster.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user}, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: user},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: user}}}
	if _, err := cluster.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kube
}

func TestFromTheInstalledAgent(t *testing.T) {
	ns := cluster.Namespace(t)
	api := cloud(t)
	installAgent(t, ns, api)
	ctx := context.Background()

	a, err := parse(t).Resolve(ctx, InCluster{Client: cluster.Client, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx); err != nil {
		t.Fatalf("the key from the agent's Secret was not used: %v", err)
	}
	if a.API != api || a.Backend != "cloud" || a.AgentName != "nightly" || !strings.Contains(a.From, "Deployment prefect-agent") {
		t.Fatalf("resolved %+v", a)
	}

	// A user who may not read the Secret is told so, and what to pass.
	alice := as(t, ns, "alice")
	var refused error
	testbed.Eventually(t, "the Role to apply to alice", func() bool {
		_, refused = parse(t).Resolve(ctx, InCluster{Client: alice, Namespace: ns})
		return refused != nil && strings.Contains(refused.Error(), "which you may not read")
	})
	for _, want := range []string{"Secret prefect-agent", "--key-file FILE", "namespace " + ns} {
		if !strings.Contains(refused.Error(), want) {
			t.Errorf("the refusal %q does not say %q", refused, want)
		}
	}
	if strings.Contains(refused.Error(), theKey) {
		t.Fatalf("the refusal shows the key")
	}
	// With the key given, the rest still comes from the Deployment.
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(theKey), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err = parse(t, "--key-file", keyFile).Resolve(ctx, InCluster{Client: alice, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx); err != nil || a.AgentName != "nightly" {
		t.Fatalf("--key-file with the Deployment's settings: %+v, %v", a, err)
	}
	// No agent here: the message says what to pass.
	empty := cluster.Namespace(t)
	if _, err := parse(t).Resolve(ctx, InCluster{Client: cluster.Client, Namespace: empty}); err == nil || !strings.Contains(err.Error(), "no agent installed in namespace "+empty) {
		t.Fatalf("no agent: %v", err)
	}
}

// TestAgentIdentityFromLabels: `runs` selects the agent's Jobs by its
// identity, made of its name and labels. The labels come from
// --agent-label, else PREFECT__CLOUD__AGENT__LABELS, else the installed
// agent's Deployment (even when the flags give everything else), and only
// when that agent is the one named.
func TestAgentIdentityFromLabels(t *testing.T) {
	ns := cluster.Namespace(t)
	api := cloud(t)
	installAgent(t, ns, api, "gpu", "etl", "gpu")
	ctx := context.Background()
	here := InCluster{Client: cluster.Client, Namespace: ns}
	resolve := func(args ...string) *Access {
		t.Helper()
		a, err := parseInto(t, &Flags{WithLabels: true}, args...).Resolve(ctx, here)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	given := []string{"--api", api, "--backend", "cloud", "--key", theKey}
	for _, c := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"the installed agent's", nil, "", agent.AgentIdentity("nightly", []string{"etl", "gpu"})},
		{"the installed agent's, everything else given", append(given, "--agent-name", "nightly"), "", agent.AgentIdentity("nightly", []string{"etl", "gpu"})},
		{"another agent's name: not the installed agent's labels", append(given, "--agent-name", "other"), "", agent.AgentIdentity("other", nil)},
		{"--agent-label", append(given, "--agent-name", "nightly", "--agent-label", "b", "--agent-label", "a", "--agent-label", "b"), "", agent.AgentIdentity("nightly", []string{"a", "b"})},
		{"the variable", append(given, "--agent-name", "nightly"), `["x"]`, agent.AgentIdentity("nightly", []string{"x"})},
	} {
		t.Setenv("PREFECT__CLOUD__AGENT__LABELS", c.env)
		if got := resolve(c.args...).AgentIdentity(); got != c.want {
			t.Errorf("%s: identity %s, want %s", c.name, got, c.want)
		}
	}
	// Without WithLabels (logs), the flag does not exist.
	fs := pflag.NewFlagSet("logs", pflag.ContinueOnError)
	(&Flags{}).AddFlags(fs)
	if fs.Lookup("agent-label") != nil {
		t.Errorf("--agent-label is offered to a command that does not select by identity")
	}
}
