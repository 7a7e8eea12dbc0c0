package cmd

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
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
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "etl-1234", Labels: map[string]string{manifest.LabelIdentifier: "1234"},
		Annotations: map[string]string{manifest.AnnotationFlowName: "etl"}},
		Spec: batchv1.JobSpec{Suspend: new(true), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "flow", Image: "prefecthq/prefect:1.4.1"}}}}}}
	if _, err := cluster.Client.BatchV1().Jobs(ns).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stdout, _, _ = runRoot(t, "__complete", "jobs", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "")
	if !strings.HasPrefix(stdout, "etl-1234\tetl\n:4\n") {
		t.Fatalf("Job name completion:\n%s", stdout)
	}
	stdout, _, _ = runRoot(t, "__complete", "agent", "st")
	if !strings.HasPrefix(stdout, "start\t") {
		t.Fatalf("subcommand completion:\n%s", stdout)
	}
}
