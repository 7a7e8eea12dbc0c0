// Package manifest builds the Kubernetes objects kubectl-prefect creates: the
// Job for a flow run (from a template, the agent's defaults and the run's
// KubernetesRun run config, with the original Prefect agent's precedence) and
// the objects `agent install` applies.
package manifest

import (
	"time"

	batchv1 "k8s.io/api/batch/v1"
)

// AgentSettings are the agent-wide settings that shape every Job.
type AgentSettings struct {
	// Namespace the Jobs are created in.
	Namespace string
	// Backend is "server" or "cloud".
	Backend string
	// API is the Prefect API address given to the flow.
	API string
	// APIKey is given to the flow, unless APIKeySecret names a Secret to read it from.
	APIKey string
	// APIKeySecret is the name of a Secret in Namespace whose key "api-key"
	// holds the API key; Jobs then reference it instead of carrying the key.
	APIKeySecret string
	// TenantID is given to the flow when there is an API key.
	TenantID string
	// Labels are the agent's labels, in the order given to the flow as
	// PREFECT__CLOUD__AGENT__LABELS (the original sorted -l labels but took
	// the environment's list as it was).
	Labels []string
	// Env is set in every flow container, in order (--env).
	Env []EnvVar
	// LogToCloud sends flow logs to the backend (off with --no-cloud-logs).
	LogToCloud bool
	// LoggingLevel is PREFECT__LOGGING__LEVEL for the flow (default INFO).
	LoggingLevel string
	// ServiceAccountName and ImagePullSecrets are the agent's defaults for Jobs.
	ServiceAccountName string
	ImagePullSecrets   []string
	// ImagePullPolicy, CPU and memory defaults apply when the run config sets none.
	ImagePullPolicy                            string
	CPURequest, CPULimit, MemRequest, MemLimit string
	// Template replaces the built-in Job template (--job-template).
	Template *batchv1.Job
	// Loader reads the templates run configs name by job_template_path; with
	// none, such run configs fail.
	Loader TemplateLoader
	// StrictTemplates refuses run config templates with fields a Job does not
	// have; else they are dropped with a warning, as the API server does.
	StrictTemplates bool
	// Owner, when set, is the prefect.io/agent label of the Jobs (and their
	// pods): the identity of the agent creating them.
	Owner string
	// MaxRunTime is the Jobs' activeDeadlineSeconds when their template
	// sets none (--max-run-time; 0: none).
	MaxRunTime time.Duration
	// Limits is the agent's concurrency limits as --limit takes them,
	// recorded on each Job ("10,label=gpu:2"; empty: none).
	Limits string
}

// FlowRun is what the Job needs to know about the run.
type FlowRun struct {
	ID          string
	Version     int
	FlowID      string
	CoreVersion string
	// FlowName and Name (the run's name) are recorded as annotations, for people.
	FlowName, Name string
	// Storage is the flow's storage JSON; a Docker storage names the image.
	Storage []byte
	// RunConfig is the run's run config JSON (null for none).
	RunConfig []byte
	// Relaunch is empty for a Scheduled run's submission. For the relaunch of
	// a Running run whose task runs are due for a retry (the flow run's
	// version does not change), it names that relaunch, so each one gets a
	// Job name of its own.
	Relaunch string
	// Labels are the run's labels, recorded on the Job for the agent's
	// concurrency limits.
	Labels []string
}
