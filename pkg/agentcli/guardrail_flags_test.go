package agentcli

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	agentpkg "github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
)

// TestGuardrailFlagsRejectBadInput: each bad value is refused before the
// agent starts, with a message naming the flag or variable and the fix.
func TestGuardrailFlagsRejectBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"limit word", []string{"--limit", "many"}, nil, `--limit: limit "many": expected MAX, label=PATTERN:MAX or flow=PATTERN:MAX, such as 50, label=gpu:4 or flow=etl-*:1`},
		{"limit kind", []string{"--limit", "tag=gpu:2"}, nil, `--limit: limit "tag=gpu:2": unknown kind "tag"`},
		{"limit max", []string{"--limit", "label=gpu:two"}, nil, `the maximum "two" is not a whole number`},
		{"limit twice", []string{"--limit", "label=gpu:2", "--limit", "label=gpu:3"}, nil, `--limit: label=gpu:2 and label=gpu:3 limit the same runs: keep one`},
		{"limits env", nil, map[string]string{"PREFECT__CLOUD__AGENT__LIMITS": "10,flow=etl-*"}, `--limit: limit "flow=etl-*": no maximum after the flow pattern`},
		{"late policy", []string{"--max-lateness", "1m", "--late-runs", "drop"}, nil, `--late-runs "drop": expected run, skip, fail`},
		{"skip without lateness", []string{"--late-runs", "skip"}, nil, `--late-runs skip needs --max-lateness: how late a run may be before it is skipped`},
		{"lateness", []string{"--max-lateness", "-1m"}, nil, `--max-lateness -1m0s: expected 0 (no limit) or a positive duration`},
		{"run time", []string{"--max-run-time", "500ms"}, nil, `--max-run-time 500ms: Kubernetes counts whole seconds`},
		{"run time env", nil, map[string]string{"PREFECT__CLOUD__AGENT__MAX_RUN_TIME": "soon"}, `PREFECT__CLOUD__AGENT__MAX_RUN_TIME="soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := runAgent(t, append([]string{"--backend", "server"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestGuardrailFlagsReachTheAgent: repeated and comma-separated limits, the
// environment's when no flag is given, and the durations.
func TestGuardrailFlagsReachTheAgent(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flags", []string{"--limit", "label=gpu:4", "--limit", "flow=etl-*:1,50"}, nil, "label=gpu:4 flow=etl-*:1 50"},
		{"env", nil, map[string]string{"PREFECT__CLOUD__AGENT__LIMITS": "label=gpu:2, 10"}, "label=gpu:2 10"},
		{"flag wins", []string{"--limit", "3"}, map[string]string{"PREFECT__CLOUD__AGENT__LIMITS": "10"}, "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var f GuardrailFlags
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			f.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := f.Complete(fs); err != nil {
				t.Fatal(err)
			}
			if err := f.Validate(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range f.limits {
				got = append(got, l.String())
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("limits %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
	clearEnv(t)
	t.Setenv("PREFECT__CLOUD__AGENT__MAX_LATENESS", "90s")
	t.Setenv("PREFECT__CLOUD__AGENT__LATE_RUNS", "skip")
	var f GuardrailFlags
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse([]string{"--max-run-time", "2h"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Complete(fs); err != nil {
		t.Fatal(err)
	}
	var cfg agentpkg.Config
	f.apply(&cfg)
	if cfg.Guardrails.MaxLateness != 90*time.Second || cfg.Guardrails.LateRuns != agentpkg.LateSkip || cfg.Job.MaxRunTime != 2*time.Hour {
		t.Fatalf("guardrails %+v, run time %s", cfg.Guardrails, cfg.Job.MaxRunTime)
	}
}
