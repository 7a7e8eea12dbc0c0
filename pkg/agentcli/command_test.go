package agentcli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// clearEnv keeps the developer's environment out of the tests.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, fallbacks := range []map[string][]string{SettingsEnvFallbacks, StartEnvFallbacks, GuardrailEnvFallbacks} {
		for _, names := range fallbacks {
			for _, n := range names {
				t.Setenv(n, "")
			}
		}
	}
	t.Setenv("NAMESPACE", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in-cluster, even when CI runs in a pod
}

func runAgent(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCmdPrefectAgent(&out, &errOut)
	cmd.SetArgs(TrimLegacyArgs(args))
	err := cmd.Execute()
	return out.String() + errOut.String(), err
}

// TestPrefectAgentRejectsBadInputBeforeStarting: the lean binary checks its
// flags and environment like `kubectl prefect agent start`, naming the bad one.
func TestPrefectAgentRejectsBadInputBeforeStarting(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"backend", []string{"--backend", "hosted"}, nil, `--backend "hosted": expected server or cloud`},
		{"legacy args", []string{"agent", "start", "--backend", "hosted"}, nil, `--backend "hosted": expected server or cloud`},
		{"api", []string{"--api", "localhost:4200"}, nil, `--api "localhost:4200": expected an http:// or https:// address`},
		{"address", []string{"--agent-address", "http://localhost"}, nil, `--agent-address "http://localhost": a port is required`},
		{"concurrency", []string{"--concurrency", "0"}, nil, `--concurrency 0: expected 1 or more`},
		{"lease", []string{"--lease-name", "Not_A_Name"}, nil, `--lease-name "Not_A_Name"`},
		{"qps", []string{"--kube-api-qps", "0"}, nil, `--kube-api-qps and --kube-api-burst must be positive`},
		{"template", []string{"--job-template", "/no/such/template.yaml"}, nil, `--job-template: job template /no/such/template.yaml doesn't exist`},
		{"labels env", nil, map[string]string{"PREFECT__CLOUD__AGENT__LABELS": "a,b"}, `PREFECT__CLOUD__AGENT__LABELS="a,b": expected a list such as ["k8s", "prod"]`},
		{"delete env", nil, map[string]string{"DELETE_FINISHED_JOBS": "maybe"}, `DELETE_FINISHED_JOBS="maybe": expected true or false`},
		{"address env", nil, map[string]string{"PREFECT__CLOUD__AGENT__AGENT_ADDRESS": "http://:x"}, `--agent-address "http://:x"`},
		{"no kubeconfig", nil, nil, "connecting to Kubernetes: no kubeconfig (--kubeconfig, KUBECONFIG or ~/.kube/config) and not running in a pod"},
		{"stray argument", []string{"start"}, nil, `unknown command "start" for "prefect-agent"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := runAgent(t, append([]string{"--backend", "server"}, tc.args...)...)
			if tc.name == "legacy args" {
				_, err = runAgent(t, tc.args...)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestTrimLegacyArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"agent start -l k8s", "-l k8s"},
		{"agent start", ""},
		{"-l agent start", "-l agent start"},
		{"agent", "agent"},
		{"", ""},
	} {
		if got := strings.Join(TrimLegacyArgs(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("TrimLegacyArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNamespaceFlagThenEnvThenKubeconfig(t *testing.T) {
	clearEnv(t)
	kubeconfig := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: one, context: {cluster: c, user: u, namespace: from-context}}
- {name: two, context: {cluster: c, user: u, namespace: from-other-context}}
current-context: one
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags KubeFlags
		env   string
		want  string
	}{
		{KubeFlags{Kubeconfig: kubeconfig}, "", "from-context"},
		{KubeFlags{Kubeconfig: kubeconfig, Context: "two"}, "", "from-other-context"},
		{KubeFlags{Kubeconfig: kubeconfig}, "from-env", "from-env"},
		{KubeFlags{Kubeconfig: kubeconfig, Namespace: "from-flag"}, "from-env", "from-flag"},
	} {
		t.Setenv("NAMESPACE", tc.env)
		got, err := tc.flags.ToNamespace()
		if err != nil || got != tc.want {
			t.Errorf("%+v with NAMESPACE=%q: namespace %q, %v; want %q", tc.flags, tc.env, got, err, tc.want)
		}
	}
	cfg, err := (&KubeFlags{Kubeconfig: kubeconfig, Context: "two"}).ToRESTConfig()
	if err != nil || cfg.Host != "https://127.0.0.1:6443" || cfg.BearerToken != "t" {
		t.Fatalf("REST config from the kubeconfig: %+v, %v", cfg, err)
	}
}

func TestSettingsArgsRoundTrip(t *testing.T) {
	clearEnv(t)
	t.Setenv("PREFECT__CLOUD__AGENT__ENV_VARS", `{"B": "2", "A": "1"}`)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o := NewStartOptions()
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--backend", "server", "-l", "b", "-l", "a", "-l", "a", "--no-cloud-logs",
		"--image-pull-secrets", "x,y", "--job-template", "https://example.com/t.yaml", "--mem-limit", "1Gi", "-k", "secret-key"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(fs); err != nil {
		t.Fatal(err)
	}
	want := "--backend server --api http://localhost:4200 --agent-name agent --label a --label b --env B=2 --env A=1 " +
		"--image-pull-secrets x,y --job-template https://example.com/t.yaml --mem-limit 1Gi --no-cloud-logs"
	if got := strings.Join(o.Settings.Args(false), " "); got != want {
		t.Fatalf("args:\n%s\nwant:\n%s", got, want)
	}
	if got := strings.Join(o.Settings.Args(true), " "); strings.Contains(got, "--job-template") || strings.Contains(got, "secret-key") {
		t.Fatalf("args with a shipped template or the key: %s", got)
	}
}
