package agentcli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	agentpkg "github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
)

// GuardrailFlags are start's guardrails, which Prefect Server never had:
// concurrency limits, the late-run policy and the Jobs' run time limit.
type GuardrailFlags struct {
	Limits      []string
	MaxLateness time.Duration
	LateRuns    string
	MaxRunTime  time.Duration

	limits []agentpkg.Limit
}

// GuardrailEnvFallbacks are the guardrails' environment variables, named
// like the 1.x agent's settings.
var GuardrailEnvFallbacks = map[string][]string{
	"limit":        {"PREFECT__CLOUD__AGENT__LIMITS"},
	"max-lateness": {"PREFECT__CLOUD__AGENT__MAX_LATENESS"},
	"late-runs":    {"PREFECT__CLOUD__AGENT__LATE_RUNS"},
	"max-run-time": {"PREFECT__CLOUD__AGENT__MAX_RUN_TIME"},
}

// GuardrailFlagNames are the guardrails' flags an installed agent is given.
var GuardrailFlagNames = []string{"limit", "max-lateness", "late-runs", "max-run-time"}

// AddFlags registers the guardrails' flags.
func (f *GuardrailFlags) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.Limits, "limit", nil, "Concurrency limit: MAX for all the agent's flow runs, label=PATTERN:MAX for runs with a matching label, flow=PATTERN:MAX for runs of matching flows (patterns take *, ? and [...]); repeat or separate with commas. A run over a limit stays Scheduled until a slot frees [PREFECT__CLOUD__AGENT__LIMITS, comma-separated]")
	fs.DurationVar(&f.MaxLateness, "max-lateness", 0, "How late a flow run may be, when the agent first sees it, before --late-runs applies (0: any lateness is run) [PREFECT__CLOUD__AGENT__MAX_LATENESS]")
	fs.StringVar(&f.LateRuns, "late-runs", agentpkg.LateRun, "What to do with a run later than --max-lateness: run (as 1.4.1), skip (set it Skipped, a final state) or fail (set it Failed) [PREFECT__CLOUD__AGENT__LATE_RUNS]")
	fs.DurationVar(&f.MaxRunTime, "max-run-time", 0, "Run time limit of flow run Jobs (activeDeadlineSeconds) when their template sets none; a run past it is failed (0: none) [PREFECT__CLOUD__AGENT__MAX_RUN_TIME]")
}

// Complete reads the environment fallbacks of the flags not given and
// parses the limits.
func (f *GuardrailFlags) Complete(fs *pflag.FlagSet) error {
	if fs.Lookup("limit") != nil && !fs.Changed("limit") {
		if raw := os.Getenv("PREFECT__CLOUD__AGENT__LIMITS"); raw != "" {
			f.Limits = []string{raw}
		}
	}
	fallbacks := map[string][]string{}
	for name, env := range GuardrailEnvFallbacks {
		if name != "limit" {
			fallbacks[name] = env
		}
	}
	if err := applyEnvFallbacks(fs, fallbacks); err != nil {
		return err
	}
	limits, err := ParseLimits(f.Limits)
	if err != nil {
		return err
	}
	f.limits = limits
	return nil
}

// ParseLimits reads --limit values, each one limit or a comma-separated
// list, and refuses two limits on the same thing.
func ParseLimits(values []string) ([]agentpkg.Limit, error) {
	var out []agentpkg.Limit
	seen := map[string]string{}
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			if strings.TrimSpace(item) == "" {
				continue
			}
			l, err := agentpkg.ParseLimit(item)
			if err != nil {
				return nil, fmt.Errorf("--limit: %w", err)
			}
			if earlier, dup := seen[l.Name()]; dup {
				return nil, fmt.Errorf("--limit: %s and %s limit the same runs: keep one", earlier, l)
			}
			seen[l.Name()] = l.String()
			out = append(out, l)
		}
	}
	return out, nil
}

// Validate checks the durations and the policy.
func (f *GuardrailFlags) Validate() error {
	if f.MaxLateness < 0 {
		return fmt.Errorf("--max-lateness %s: expected 0 (no limit) or a positive duration such as 1h", f.MaxLateness)
	}
	if f.MaxRunTime < 0 {
		return fmt.Errorf("--max-run-time %s: expected 0 (no limit) or a positive duration such as 6h", f.MaxRunTime)
	}
	if f.MaxRunTime > 0 && f.MaxRunTime < time.Second {
		return fmt.Errorf("--max-run-time %s: Kubernetes counts whole seconds; give 1s or more", f.MaxRunTime)
	}
	ok := false
	for _, p := range agentpkg.LatePolicies {
		ok = ok || f.LateRuns == p
	}
	if !ok {
		return fmt.Errorf("--late-runs %q: expected %s", f.LateRuns, strings.Join(agentpkg.LatePolicies, ", "))
	}
	if f.LateRuns != agentpkg.LateRun && f.MaxLateness == 0 {
		return fmt.Errorf("--late-runs %s needs --max-lateness: how late a run may be before it is %s", f.LateRuns, map[string]string{agentpkg.LateSkip: "skipped", agentpkg.LateFail: "failed"}[f.LateRuns])
	}
	return nil
}

// apply writes the guardrails into the agent's configuration.
func (f *GuardrailFlags) apply(cfg *agentpkg.Config) {
	cfg.Guardrails = agentpkg.Guardrails{Limits: f.limits, MaxLateness: f.MaxLateness, LateRuns: f.LateRuns}
	cfg.Job.MaxRunTime = f.MaxRunTime
	texts := make([]string, len(f.limits))
	for i, l := range f.limits {
		texts[i] = l.String()
	}
	cfg.Job.Limits = strings.Join(texts, ",")
}
