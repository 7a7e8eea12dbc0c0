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
	for in, want := range map[string]string{
		"": "[]", "prod,k8s": "['prod', 'k8s']", "it's": `["it's"]`, `it's "x"`: `['it\'s "x"']`,
		"tab\there": `['tab\there']`, "back\\slash": `['back\\slash']`, "bell\a,nl\n": `['bell\x07', 'nl\n']`,
		"zwsp\u200b": `['zwsp\u200b']`, "é,日本": `['é', '日本']`,
	} {
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
	job, _, err := BuildJob(context.Background(), s, FlowRun{ID: "r", Version: 1, FlowID: "f",
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

func TestDecodeTemplateLenientAndStrict(t *testing.T) {
	data := []byte("spec:\n  backofLimit: 1\n  template:\n    metadata: {name: a, name: b}\n    spec:\n      serviceAccountName: null\n      containers: [{name: flow}]\n")
	lenient, err := DecodeTemplate(data, "t.yaml", false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`job template t.yaml: line 4: key "name" already set in map, the last value is used`,
		`job template t.yaml: unknown field "spec.backofLimit", dropped`,
	}
	if strings.Join(lenient.Warnings, "\n") != strings.Join(want, "\n") {
		t.Fatalf("warnings:\n%s\nwant:\n%s", strings.Join(lenient.Warnings, "\n"), strings.Join(want, "\n"))
	}
	if lenient.Job.Spec.Template.Name != "b" || !lenient.HasServiceAccountName || lenient.HasImagePullSecrets {
		t.Fatalf("pod name %q, has serviceAccountName %v, has imagePullSecrets %v", lenient.Job.Spec.Template.Name, lenient.HasServiceAccountName, lenient.HasImagePullSecrets)
	}
	if _, err := DecodeTemplate(data, "t.yaml", true); err == nil || !strings.Contains(err.Error(), `key "name" already set`) {
		t.Fatalf("strict: %v", err)
	}
	if _, err := DecodeTemplate([]byte("spec: {backofLimit: 1}"), "t.yaml", true); err == nil || !strings.Contains(err.Error(), `unknown field "spec.backofLimit"`) {
		t.Fatalf("strict: %v", err)
	}
}

// recordingLoader is a TemplateLoader that serves one template from memory.
type recordingLoader struct{ asked []string }

func (l *recordingLoader) Load(_ context.Context, location string) ([]byte, error) {
	l.asked = append(l.asked, location)
	return []byte("metadata: {name: loaded}\nspec: {template: {spec: {containers: [{name: flow}]}}}\n"), nil
}

func TestTemplatePathsGoThroughTheInjectedLoader(t *testing.T) {
	run := FlowRun{ID: "r", Version: 1, FlowID: "f", RunConfig: []byte(`{"type": "KubernetesRun", "job_template_path": "s3://bucket/job.yaml"}`)}
	s := AgentSettings{Namespace: "ns", Backend: "server", API: "http://api"}
	if _, _, err := BuildJob(context.Background(), s, run); err == nil || !strings.Contains(err.Error(), "this agent reads no job_template_path") {
		t.Fatalf("without a loader: %v", err)
	}
	loader := &recordingLoader{}
	s.Loader = loader
	job, _, err := BuildJob(context.Background(), s, run)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(job.Name, "loaded-") || strings.Join(loader.asked, " ") != "s3://bucket/job.yaml" {
		t.Fatalf("job %s, loader asked for %v", job.Name, loader.asked)
	}
}
