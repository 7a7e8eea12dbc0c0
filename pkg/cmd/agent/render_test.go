package agent

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
)

var update = flag.Bool("update", false, "rewrite the expected outputs in testdata")

// clearAgentEnv keeps the developer's environment out of the tests.
func clearAgentEnv(t *testing.T) {
	t.Helper()
	for _, names := range agentcli.SettingsEnvFallbacks {
		for _, n := range names {
			t.Setenv(n, "")
		}
	}
	for _, n := range []string{"NAMESPACE", "PREFECT__LOGGING__LEVEL", "PREFECT__CLOUD__AGENT__AGENT_ADDRESS", "DELETE_FINISHED_JOBS"} {
		t.Setenv(n, "")
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
}

// runCommand runs an agent subcommand and returns what it printed and its error.
func runCommand(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	configFlags := genericclioptions.NewConfigFlags(true)
	cmd := NewCmdAgent(configFlags, streams)
	configFlags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// TestRender checks `agent render` against the expected Job (expected.yaml) or
// error (expected-error.txt) for each run config in testdata/render. In a
// case's directory, args holds the flags (split on spaces, or one per line
// when it has several lines), env optional KEY=VALUE lines, and
// expected-warnings.txt what is printed on stderr (nothing when absent).
func TestRender(t *testing.T) {
	dirs, err := filepath.Glob("testdata/render/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no render cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			clearAgentEnv(t)
			rawArgs, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"render", "--run-config", filepath.Join(dir, "run-config.json")}, caseArgs(string(rawArgs))...)
			if rawEnv, err := os.ReadFile(filepath.Join(dir, "env")); err == nil {
				for _, line := range strings.Split(strings.TrimSpace(string(rawEnv)), "\n") {
					name, value, _ := strings.Cut(line, "=")
					t.Setenv(name, value)
				}
			}
			stdout, stderr, runErr := runCommand(t, args...)
			wantFile, got := filepath.Join(dir, "expected.yaml"), stdout
			if strings.HasPrefix(filepath.Base(dir), "error-") {
				if runErr == nil {
					t.Fatalf("render succeeded, want an error; printed:\n%s", stdout)
				}
				wantFile, got = filepath.Join(dir, "expected-error.txt"), runErr.Error()+"\n"
			} else if runErr != nil {
				t.Fatalf("render: %v", runErr)
			}
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(want, []byte(got)) {
				t.Errorf("render output differs from %s\n--- got\n%s\n--- want\n%s", wantFile, got, want)
			}
			warningsFile := filepath.Join(dir, "expected-warnings.txt")
			if *update && stderr != "" {
				if err := os.WriteFile(warningsFile, []byte(stderr), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantWarnings, _ := os.ReadFile(warningsFile)
			if stderr != string(wantWarnings) {
				t.Errorf("render printed on stderr:\n%s\nwant (%s):\n%s", stderr, warningsFile, wantWarnings)
			}
		})
	}
}

// caseArgs splits a case's args file: one flag per line when it has several
// lines (so that a value may hold spaces), else on spaces.
func caseArgs(raw string) []string {
	lines := strings.Split(strings.TrimSpace(raw), "\n")
	if len(lines) < 2 {
		return strings.Fields(raw)
	}
	return lines
}

// TestRenderNeedsNoCluster renders without -n: the namespace comes from
// NAMESPACE, else the kubeconfig's current context even when its client
// certificate file is gone, else default when there is no usable kubeconfig.
func TestRenderNeedsNoCluster(t *testing.T) {
	clearAgentEnv(t)
	dir := t.TempDir()
	runConfig := filepath.Join(dir, "run-config.json")
	if err := os.WriteFile(runConfig, []byte(`{"type": "KubernetesRun"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(broken, []byte(`apiVersion: v1
kind: Config
current-context: stale
contexts:
- name: stale
  context: {cluster: gone, user: gone, namespace: from-kubeconfig}
- name: other
  context: {cluster: gone, user: gone, namespace: other-ns}
clusters:
- name: gone
  cluster: {server: "https://192.0.2.1:6443"}
users:
- name: gone
  user: {client-certificate: `+filepath.Join(dir, "missing.crt")+`, client-key: `+filepath.Join(dir, "missing.key")+`}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("{not yaml: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, kubeconfig, namespaceEnv string
		args                           []string
		want                           string
	}{
		{"kubeconfig with a missing client certificate", broken, "", nil, "from-kubeconfig"},
		{"--context of that kubeconfig", broken, "", []string{"--context", "other"}, "other-ns"},
		{"NAMESPACE before the kubeconfig", broken, "from-env", nil, "from-env"},
		{"-n before NAMESPACE", broken, "from-env", []string{"-n", "from-flag"}, "from-flag"},
		{"no kubeconfig", filepath.Join(dir, "none"), "", nil, "default"},
		{"a kubeconfig that does not parse", garbage, "", nil, "default"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", c.kubeconfig)
			t.Setenv("NAMESPACE", c.namespaceEnv)
			args := append([]string{"render", "--run-config", runConfig, "--backend", "server", "-o", "jsonpath={.metadata.namespace}"}, c.args...)
			stdout, _, err := runCommand(t, args...)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if stdout != c.want {
				t.Fatalf("namespace %q, want %q", stdout, c.want)
			}
		})
	}
}
