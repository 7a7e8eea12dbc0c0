package cmd

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

var cluster *testbed.Cluster

func TestMain(m *testing.M) { os.Exit(testbed.Run(m, &cluster)) }

func runRoot(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := NewCmdPrefect(streams)
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func TestVersionClientJSON(t *testing.T) {
	stdout, _, err := runRoot(t, "version", "--client", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		ClientVersion struct{ Version, GoVersion, Platform string } `json:"clientVersion"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil || v.ClientVersion.Version == "" || !strings.HasPrefix(v.ClientVersion.GoVersion, "go") {
		t.Fatalf("version -o json: %v\n%s", err, stdout)
	}
}

func TestVersionShowsTheInstalledAgent(t *testing.T) {
	ns := cluster.Namespace(t)
	if _, stderr, err := runRoot(t, "agent", "install", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "--backend", "server", "--image", "example.com/kubectl-prefect:v9.9.9"); err != nil {
		t.Fatalf("install: %v %s", err, stderr)
	}
	stdout, _, err := runRoot(t, "version", "--kubeconfig", cluster.Kubeconfig, "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "Agent: example.com/kubectl-prefect:v9.9.9 in deployment "+ns+"/prefect-agent") {
		t.Fatalf("version does not show the installed agent:\n%s", stdout)
	}
}

func TestCompletionOfNamespaces(t *testing.T) {
	ns := cluster.Namespace(t)
	stdout, _, err := runRoot(t, "__complete", "jobs", "--kubeconfig", cluster.Kubeconfig, "-n", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, ns+"\n") || !strings.Contains(stdout, ":4") {
		t.Fatalf("namespace completion lacks %s:\n%s", ns, stdout)
	}
	stdout, _, _ = runRoot(t, "__complete", "agent", "st")
	if !strings.HasPrefix(stdout, "start\t") {
		t.Fatalf("subcommand completion:\n%s", stdout)
	}
}
