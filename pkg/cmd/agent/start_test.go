package agent

import (
	"strings"
	"testing"

	agentjobs "github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

// TestStartRejectsBadInputBeforeStarting checks that each bad flag or
// environment value stops `agent start` at once with a message naming it.
func TestStartRejectsBadInputBeforeStarting(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"backend", []string{"--backend", "hosted"}, nil, `--backend "hosted": expected server or cloud`},
		{"api", []string{"--api", "localhost:4200"}, nil, `--api "localhost:4200": expected an http:// or https:// address`},
		{"env without value", []string{"--env", "FOO"}, nil, `--env "FOO": expected KEY=VALUE`},
		{"env name", []string{"--env", "1X=y"}, nil, `is not a valid environment variable name`},
		{"quantity", []string{"--mem-request", "lots"}, nil, `--mem-request "lots": expected a Kubernetes quantity`},
		{"pull policy", []string{"--image-pull-policy", "Sometimes"}, nil, `--image-pull-policy "Sometimes": expected Always, IfNotPresent or Never`},
		{"tenant", []string{"--tenant-id", "team"}, nil, `--tenant-id "team": expected a UUID`},
		{"address", []string{"--agent-address", "http://localhost"}, nil, `--agent-address "http://localhost": a port is required`},
		{"max polls", []string{"--max-polls", "-1"}, nil, `--max-polls -1`},
		{"template", []string{"--job-template", "/no/such/template.yaml"}, nil, `--job-template: job template /no/such/template.yaml doesn't exist`},
		{"template locations", nil, map[string]string{"ALLOWED_TEMPLATE_LOCATIONS": "ftp://host/"}, `--allowed-template-locations "ftp://host/": unsupported scheme`},
		{"template location flag", []string{"--allowed-template-locations", "s3:///no-bucket"}, nil, `--allowed-template-locations "s3:///no-bucket": name a bucket`},
		{"strict templates env", nil, map[string]string{"STRICT_TEMPLATES": "maybe"}, `STRICT_TEMPLATES="maybe": expected true or false`},
		{"labels env", nil, map[string]string{"PREFECT__CLOUD__AGENT__LABELS": "a,b"}, `PREFECT__CLOUD__AGENT__LABELS="a,b": expected a list such as ["k8s", "prod"]`},
		{"env vars env", nil, map[string]string{"PREFECT__CLOUD__AGENT__ENV_VARS": "A=1"}, `PREFECT__CLOUD__AGENT__ENV_VARS: expected a JSON object`},
		{"delete env", nil, map[string]string{"DELETE_FINISHED_JOBS": "maybe"}, `DELETE_FINISHED_JOBS="maybe": expected true or false`},
		{"backend env", nil, map[string]string{"PREFECT__BACKEND": "local"}, `--backend "local"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearAgentEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := []string{"start", "--backend", "server"}
			if tc.env["PREFECT__BACKEND"] != "" {
				args = []string{"start"} // the flag would win over the variable
			}
			_, _, err := runCommand(t, append(args, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEnvironmentFallbacks(t *testing.T) {
	clearAgentEnv(t)
	t.Setenv("PREFECT__CLOUD__AGENT__LABELS", `['k8s', "prod"]`)
	t.Setenv("PREFECT__CLOUD__AGENT__ENV_VARS", `{"B": "2", "A": "1"}`)
	t.Setenv("IMAGE_PULL_SECRETS", "one,two")
	t.Setenv("PREFECT__CLOUD__SEND_FLOW_RUN_LOGS", "False")
	t.Setenv("JOB_CPU_LIMIT", "3")
	t.Setenv("NAMESPACE", "from-env")
	stdout, _, err := runCommand(t, "render", "--run-config", "testdata/render/null-run-config/run-config.json", "--backend", "server")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"namespace: from-env", `value: '['k8s', 'prod']'`, "- name: B\n          value: \"2\"\n        - name: A",
		"- name: one\n      - name: two", `cpu: "3"`, "PREFECT__LOGGING__LOG_TO_CLOUD\n          value: \"false\"",
	} {
		want = strings.ReplaceAll(want, `'['k8s', 'prod']'`, `'[''k8s'', ''prod'']'`)
		if !strings.Contains(stdout, want) {
			t.Errorf("render output lacks %q:\n%s", want, stdout)
		}
	}
	// A flag wins over its environment variable.
	stdout, _, err = runCommand(t, "render", "--run-config", "testdata/render/null-run-config/run-config.json", "--backend", "server", "-l", "only", "-n", "flag-ns")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, `value: '[''only'']'`) || !strings.Contains(stdout, "namespace: flag-ns") {
		t.Errorf("flags did not win over the environment:\n%s", stdout)
	}
}

func TestStartHelpShowsThePendingPolicy(t *testing.T) {
	clearAgentEnv(t)
	stdout, _, err := runCommand(t, "start", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range agentjobs.PendingPolicyTable() {
		if !strings.Contains(stdout, row.Reason) {
			t.Errorf("--help lacks the policy row %q", row.Reason)
		}
	}
}
