package manifest

import (
	"context"
	"strings"
	"testing"
)

func TestJobNameIsDeterministicAndFitsALabel(t *testing.T) {
	a, idA, err := JobName("", "0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d", 3, "")
	if err != nil {
		t.Fatal(err)
	}
	b, idB, _ := JobName("", "0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d", 3, "")
	c, _, _ := JobName("", "0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d", 4, "")
	if a != b || idA != idB || a == c || !strings.HasPrefix(a, "prefect-job-") || !strings.HasSuffix(a, "-"+idA) {
		t.Fatalf("names: %s %s %s", a, b, c)
	}
	r1, _, _ := JobName("", "0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d", 3, "task-a/2")
	r2, _, _ := JobName("", "0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d", 3, "task-a/4")
	if r1 == a || r1 == r2 {
		t.Fatalf("a relaunch must get a name of its own: %s %s %s", a, r1, r2)
	}
	long, _, _ := JobName(strings.Repeat("a", 60)+"-b", "run", 1, "")
	if len(long) > 63 || strings.Contains(long, "--") {
		t.Fatalf("long prefix gave %q (%d chars)", long, len(long))
	}
	if _, _, err := JobName("Upper_Case", "run", 1, ""); err == nil || !strings.Contains(err.Error(), `metadata.name "Upper_Case"`) {
		t.Fatalf("an invalid prefix was accepted: %v", err)
	}
}

func TestPythonListMatchesTheOriginalsRepr(t *testing.T) {
	for in, want := range map[string]string{"": "[]", "prod,k8s": "['k8s', 'prod']", "it's": `['it\'s']`} {
		var items []string
		if in != "" {
			items = strings.Split(in, ",")
		}
		if got := PythonList(items); got != want {
			t.Errorf("PythonList(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestLaterEnvWinsInPlace(t *testing.T) {
	s := AgentSettings{Namespace: "ns", Backend: "server", API: "http://api", LogToCloud: true,
		Env: []EnvVar{{"A", "agent"}, {"B", "agent"}}}
	job, err := BuildJob(context.Background(), s, FlowRun{ID: "r", Version: 1, FlowID: "f",
		RunConfig: []byte(`{"type": "KubernetesRun", "env": {"B": "run", "PREFECT__BACKEND": "ignored", "PREFECT__CLOUD__SEND_FLOW_RUN_LOGS": "false"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	var names, values []string
	for _, e := range job.Spec.Template.Spec.Containers[0].Env[:5] {
		names, values = append(names, e.Name), append(values, e.Value)
	}
	if strings.Join(names, " ") != "PREFECT__LOGGING__LEVEL A B PREFECT__BACKEND PREFECT__CLOUD__SEND_FLOW_RUN_LOGS" ||
		strings.Join(values, " ") != "INFO agent run server false" {
		t.Fatalf("env order %v values %v", names, values)
	}
}
