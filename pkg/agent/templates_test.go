package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/jobtemplate"
)

// TestRunConfigTemplatesAreFencedAndLenient runs flow runs whose run configs
// name templates: locations outside --allowed-template-locations fail the
// run with a message naming the flag, an allowed one is used, and fields a
// Job does not have are dropped with a WARNING line on the run.
func TestRunConfigTemplatesAreFencedAndLenient(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/templates/job.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("apiVersion: batch/v1\nkind: Job\nmetadata: {name: fetched}\nspec: {template: {spec: {containers: [{name: flow}]}}}\n"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	loader, err := jobtemplate.New(jobtemplate.Options{Allowed: []string{srv.URL + "/templates/", "https://"}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, emulator.Config{})
	withPath := func(p string) emulator.FlowRunSpec {
		return emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "KubernetesRun", "job_template_path": p})}
	}
	file := e.schedule(withPath("file:///etc/passwd"))
	metadata := e.schedule(withPath("https://169.254.169.254/latest/meta-data/"))
	outside := e.schedule(withPath(srv.URL + "/private/job.yaml"))
	allowed := e.schedule(withPath(srv.URL + "/templates/job.yaml"))
	stray := e.schedule(emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "KubernetesRun",
		"job_template": map[string]any{"metadata": map[string]any{"name": "stray"},
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containerz": []any{}, "containers": []any{map[string]any{"name": "flow"}}}}}}})})
	e.start("", func(c *Config) { c.Job.Loader = loader })

	for id, want := range map[string]string{
		file.ID:     "job template file:///etc/passwd is not in a location this agent allows run configs to use: the agent's operator can allow it with --allowed-template-locations",
		metadata.ID: "resolves to a loopback, link-local or private address",
		outside.ID:  "/private/job.yaml is not in a location this agent allows run configs to use",
	} {
		run := e.waitState(id, "Failed")
		last := run.States[len(run.States)-1]
		if !strings.Contains(last.Message, want) || !strings.Contains(last.Message, jobtemplate.FlagName) || !contains(logsAt(run, "ERROR"), want) {
			t.Errorf("run %s: Failed message %q, ERROR lines %q; want both to say %q and name the flag", id, last.Message, logsAt(run, "ERROR"), want)
		}
	}

	e.waitSubmitted(allowed.ID)
	if jobs := e.jobsFor(allowed.ID); len(jobs) != 1 || !strings.HasPrefix(jobs[0].Name, "fetched-") {
		t.Fatalf("the allowed template was not used: %d Jobs %v", len(jobs), jobs)
	}
	run := e.waitSubmitted(stray.ID)
	if warnings := logsAt(run, "WARNING"); len(warnings) != 1 || !strings.Contains(warnings[0], `unknown field "spec.template.spec.containerz", dropped`) {
		t.Fatalf("WARNING lines %q, want one naming the dropped field", warnings)
	}
	if jobs := e.jobsFor(stray.ID); len(jobs) != 1 || !strings.HasPrefix(jobs[0].Name, "stray-") {
		t.Fatalf("the lenient template was not used: %v", jobs)
	}
}
