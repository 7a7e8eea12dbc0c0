package agentcli

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	agentpkg "github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// SettingsFlags are the agent settings shared by start, render and install.
// Each flag falls back to the environment variable the original agent read.
type SettingsFlags struct {
	API              string
	Key              string
	KeySecretName    string
	TenantID         string
	Backend          string
	AgentName        string
	Labels           []string
	Env              []string
	NoCloudLogs      bool
	ServiceAccount   string
	ImagePullSecrets []string
	JobTemplate      string
	MemRequest       string
	MemLimit         string
	CPURequest       string
	CPULimit         string
	ImagePullPolicy  string

	// env holds the agent env parsed from --env or PREFECT__CLOUD__AGENT__ENV_VARS.
	env []manifest.EnvVar
	// labelsFromEnv: the labels came from PREFECT__CLOUD__AGENT__LABELS and
	// are kept as they are; -l labels are sorted and de-duplicated.
	labelsFromEnv bool
}

// SettingsEnvFallbacks maps the settings' flags to the environment variables
// read when the flag is not given, first set one wins.
var SettingsEnvFallbacks = map[string][]string{
	"api":                  {"PREFECT__CLOUD__API"},
	"key":                  {"PREFECT__CLOUD__API_KEY", "PREFECT__CLOUD__AGENT__AUTH_TOKEN"},
	"key-secret-name":      {"API_KEY_SECRET_NAME"},
	"tenant-id":            {"PREFECT__CLOUD__TENANT_ID"},
	"backend":              {"PREFECT__BACKEND"},
	"agent-name":           {"PREFECT__CLOUD__AGENT__NAME"},
	"label":                {"PREFECT__CLOUD__AGENT__LABELS"},
	"env":                  {"PREFECT__CLOUD__AGENT__ENV_VARS"},
	"no-cloud-logs":        {"PREFECT__CLOUD__SEND_FLOW_RUN_LOGS"},
	"service-account-name": {"SERVICE_ACCOUNT_NAME"},
	"image-pull-secrets":   {"IMAGE_PULL_SECRETS"},
	"job-template":         {"JOB_TEMPLATE_PATH"},
	"mem-request":          {"JOB_MEM_REQUEST"},
	"mem-limit":            {"JOB_MEM_LIMIT"},
	"cpu-request":          {"JOB_CPU_REQUEST"},
	"cpu-limit":            {"JOB_CPU_LIMIT"},
	"image-pull-policy":    {"IMAGE_PULL_POLICY"},
}

// AddFlags registers the settings on a command's flags.
func (f *SettingsFlags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&f.API, "api", "a", "", "Prefect API address (default http://localhost:4200 with --backend server, https://api.prefect.io with cloud) [PREFECT__CLOUD__API]")
	fs.StringVarP(&f.Key, "key", "k", "", "Prefect API key [PREFECT__CLOUD__API_KEY]")
	fs.StringVar(&f.KeySecretName, "key-secret-name", "", "Secret in the Jobs' namespace whose key \"api-key\" holds the API key; flow Jobs then reference it instead of carrying the key [API_KEY_SECRET_NAME]")
	fs.StringVar(&f.TenantID, "tenant-id", "", "Prefect tenant id (default: Server's first tenant, or the API key's tenant) [PREFECT__CLOUD__TENANT_ID]")
	fs.StringVarP(&f.Backend, "backend", "b", "cloud", "Prefect backend: server or cloud [PREFECT__BACKEND]")
	fs.StringVar(&f.AgentName, "agent-name", "agent", "Agent name, shown in the Prefect UI and on run log lines [PREFECT__CLOUD__AGENT__NAME]")
	fs.StringArrayVarP(&f.Labels, "label", "l", nil, "Agent label; repeat for more. The agent runs only flow runs whose labels are all among its labels [PREFECT__CLOUD__AGENT__LABELS, a list like [\"a\", \"b\"]]")
	fs.StringArrayVarP(&f.Env, "env", "e", nil, "KEY=VALUE set in every flow run's container; repeat for more [PREFECT__CLOUD__AGENT__ENV_VARS, a JSON object]")
	fs.BoolVar(&f.NoCloudLogs, "no-cloud-logs", false, "Do not send flow run logs to the backend [PREFECT__CLOUD__SEND_FLOW_RUN_LOGS=false]")
	fs.StringVar(&f.ServiceAccount, "service-account-name", "", "Service account for flow run pods [SERVICE_ACCOUNT_NAME]")
	fs.StringSliceVar(&f.ImagePullSecrets, "image-pull-secrets", nil, "Comma-separated image pull secrets for flow run pods [IMAGE_PULL_SECRETS]")
	fs.StringVar(&f.JobTemplate, "job-template", "", "Job template replacing the built-in one: a path, https://, s3:// or gs:// address [JOB_TEMPLATE_PATH]")
	fs.StringVar(&f.MemRequest, "mem-request", "", "Default memory request of flow containers, e.g. 512Mi [JOB_MEM_REQUEST]")
	fs.StringVar(&f.MemLimit, "mem-limit", "", "Default memory limit of flow containers [JOB_MEM_LIMIT]")
	fs.StringVar(&f.CPURequest, "cpu-request", "", "Default CPU request of flow containers, e.g. 500m [JOB_CPU_REQUEST]")
	fs.StringVar(&f.CPULimit, "cpu-limit", "", "Default CPU limit of flow containers [JOB_CPU_LIMIT]")
	fs.StringVar(&f.ImagePullPolicy, "image-pull-policy", "", "Default image pull policy of flow containers: Always, IfNotPresent or Never [IMAGE_PULL_POLICY]")
}

// Complete fills the settings not given as flags from the environment.
func (f *SettingsFlags) Complete(fs *pflag.FlagSet) error {
	f.labelsFromEnv = !fs.Changed("label") && os.Getenv("PREFECT__CLOUD__AGENT__LABELS") != ""
	if err := applyEnvFallbacks(fs, SettingsEnvFallbacks); err != nil {
		return err
	}
	f.ImagePullSecrets = stripItems(f.ImagePullSecrets)
	if f.API == "" {
		f.API = "https://api.prefect.io"
		if f.Backend == "server" {
			f.API = "http://localhost:4200"
		}
	}
	f.env = nil
	if !fs.Changed("env") {
		if raw := os.Getenv("PREFECT__CLOUD__AGENT__ENV_VARS"); raw != "" {
			env, err := parseEnvObject(raw)
			if err != nil {
				return fmt.Errorf("PREFECT__CLOUD__AGENT__ENV_VARS: %w", err)
			}
			f.env = env
		}
	}
	for _, kv := range f.Env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--env %q: expected KEY=VALUE", kv)
		}
		f.env = append(f.env, manifest.EnvVar{Name: name, Value: value})
	}
	return nil
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate checks every setting and names the flag of the first bad one.
func (f *SettingsFlags) Validate() error {
	if f.Backend != "server" && f.Backend != "cloud" {
		return fmt.Errorf("--backend %q: expected server or cloud", f.Backend)
	}
	if u, err := url.Parse(f.API); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--api %q: expected an http:// or https:// address such as http://localhost:4200", f.API)
	}
	if f.TenantID != "" && !uuidPattern.MatchString(f.TenantID) {
		return fmt.Errorf("--tenant-id %q: expected a UUID such as 3f1c2a4e-8b6d-4f0a-9c7e-1d2b3a4c5d6e", f.TenantID)
	}
	if f.AgentName == "" {
		return fmt.Errorf("--agent-name must not be empty")
	}
	for _, l := range f.Labels {
		if strings.TrimSpace(l) == "" {
			return fmt.Errorf("--label must not be empty")
		}
	}
	for _, v := range f.env {
		if errs := validation.IsEnvVarName(v.Name); len(errs) > 0 {
			return fmt.Errorf("--env %q: %q is not a valid environment variable name (%s)", v.Name+"="+v.Value, v.Name, strings.Join(errs, "; "))
		}
	}
	for flag, value := range map[string]string{"--mem-request": f.MemRequest, "--mem-limit": f.MemLimit, "--cpu-request": f.CPURequest, "--cpu-limit": f.CPULimit} {
		if value == "" {
			continue
		}
		if _, err := resource.ParseQuantity(value); err != nil {
			return fmt.Errorf("%s %q: expected a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi", flag, value)
		}
	}
	switch f.ImagePullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		return fmt.Errorf("--image-pull-policy %q: expected Always, IfNotPresent or Never", f.ImagePullPolicy)
	}
	for _, s := range f.ImagePullSecrets {
		if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
			return fmt.Errorf("--image-pull-secrets: %q is not a Secret name (%s)", s, strings.Join(errs, "; "))
		}
	}
	if f.KeySecretName != "" {
		if errs := validation.IsDNS1123Subdomain(f.KeySecretName); len(errs) > 0 {
			return fmt.Errorf("--key-secret-name %q is not a Secret name (%s)", f.KeySecretName, strings.Join(errs, "; "))
		}
	}
	return nil
}

// ToSettings turns the flags into Job settings; TemplateFlags.Apply adds the
// agent's job template and the template loader.
func (f *SettingsFlags) ToSettings(namespace string) manifest.AgentSettings {
	labels := agentpkg.UniqueLabels(f.Labels)
	if f.labelsFromEnv {
		labels = append([]string{}, f.Labels...)
	}
	return manifest.AgentSettings{
		Namespace: namespace, Backend: f.Backend, API: f.API, APIKey: f.Key, APIKeySecret: f.KeySecretName,
		TenantID: f.TenantID, Labels: labels, Env: f.env, LogToCloud: !f.NoCloudLogs,
		LoggingLevel: os.Getenv("PREFECT__LOGGING__LEVEL"), ServiceAccountName: f.ServiceAccount,
		ImagePullSecrets: f.ImagePullSecrets, ImagePullPolicy: f.ImagePullPolicy,
		CPURequest: f.CPURequest, CPULimit: f.CPULimit, MemRequest: f.MemRequest, MemLimit: f.MemLimit,
	}
}

// Args are the `agent start` flags that give an agent these settings, for an
// installed agent. The key is left out (it travels in a Secret), and so is
// --job-template when the installer ships the template itself.
func (f *SettingsFlags) Args(templateShipped bool) []string {
	args := []string{"--backend", f.Backend, "--api", f.API, "--agent-name", f.AgentName}
	add := func(flag, value string) {
		if value != "" {
			args = append(args, flag, value)
		}
	}
	add("--tenant-id", f.TenantID)
	for _, l := range agentpkg.UniqueLabels(f.Labels) {
		add("--label", l)
	}
	for _, e := range f.env {
		add("--env", e.Name+"="+e.Value)
	}
	if len(f.ImagePullSecrets) > 0 {
		add("--image-pull-secrets", strings.Join(f.ImagePullSecrets, ","))
	}
	add("--service-account-name", f.ServiceAccount)
	if !templateShipped {
		add("--job-template", f.JobTemplate)
	}
	add("--mem-request", f.MemRequest)
	add("--mem-limit", f.MemLimit)
	add("--cpu-request", f.CPURequest)
	add("--cpu-limit", f.CPULimit)
	add("--image-pull-policy", f.ImagePullPolicy)
	if f.NoCloudLogs {
		args = append(args, "--no-cloud-logs")
	}
	return args
}
