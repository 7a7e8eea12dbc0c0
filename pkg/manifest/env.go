package manifest

import (
	corev1 "k8s.io/api/core/v1"
)

// orderedEnv is a list of env vars where setting a name again replaces its
// value in place, like the Python dict the original agent builds.
type orderedEnv struct {
	vars  []corev1.EnvVar
	index map[string]int
}

func (e *orderedEnv) set(v corev1.EnvVar) {
	if e.index == nil {
		e.index = map[string]int{}
	}
	if i, ok := e.index[v.Name]; ok {
		e.vars[i] = v
		return
	}
	e.index[v.Name] = len(e.vars)
	e.vars = append(e.vars, v)
}

func (e *orderedEnv) setValue(name, value string) {
	e.set(corev1.EnvVar{Name: name, Value: value})
}

func (e *orderedEnv) value(name string) (string, bool) {
	i, ok := e.index[name]
	if !ok {
		return "", false
	}
	return e.vars[i].Value, true
}

// flowEnv builds the flow container's environment in the original agent's
// order and precedence: logging level, agent --env, run config env, whether to
// send logs, then the values the flow needs to find its run, which always win.
func flowEnv(s AgentSettings, run FlowRun, rc RunConfig, image string) []corev1.EnvVar {
	var env orderedEnv
	level := s.LoggingLevel
	if level == "" {
		level = "INFO"
	}
	env.setValue("PREFECT__LOGGING__LEVEL", level)
	for _, v := range s.Env {
		env.setValue(v.Name, v.Value)
	}
	for _, v := range rc.Env {
		env.setValue(v.Name, v.Value)
	}
	sendLogs := "false"
	if s.LogToCloud {
		sendLogs = "true"
		if v, ok := env.value("PREFECT__CLOUD__SEND_FLOW_RUN_LOGS"); ok {
			sendLogs = v // a run may turn its logs off, not on
		}
	}
	env.setValue("PREFECT__CLOUD__SEND_FLOW_RUN_LOGS", sendLogs)

	env.setValue("PREFECT__BACKEND", s.Backend)
	env.setValue("PREFECT__CLOUD__AGENT__LABELS", PythonList(s.Labels))
	env.setValue("PREFECT__CLOUD__API", s.API)
	env.set(apiKeyVar("PREFECT__CLOUD__API_KEY", s))
	tenant := ""
	if s.APIKey != "" || s.APIKeySecret != "" {
		tenant = s.TenantID
	}
	env.setValue("PREFECT__CLOUD__TENANT_ID", tenant)
	env.setValue("PREFECT__CLOUD__USE_LOCAL_SECRETS", "false")
	env.setValue("PREFECT__CONTEXT__FLOW_RUN_ID", run.ID)
	env.setValue("PREFECT__CONTEXT__FLOW_ID", run.FlowID)
	env.setValue("PREFECT__CONTEXT__IMAGE", image)
	env.setValue("PREFECT__ENGINE__FLOW_RUNNER__DEFAULT_CLASS", "prefect.engine.cloud.CloudFlowRunner")
	env.setValue("PREFECT__LOGGING__LOG_TO_CLOUD", boolText(s.LogToCloud))
	env.set(apiKeyVar("PREFECT__CLOUD__AUTH_TOKEN", s))
	return env.vars
}

// apiKeyVar gives the flow the API key: from the agent's Secret when there is
// one, so the key never sits in a Job's spec; else as the original did.
func apiKeyVar(name string, s AgentSettings) corev1.EnvVar {
	if s.APIKeySecret != "" {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.APIKeySecret},
			Key:                  APIKeySecretKey,
		}}}
	}
	return corev1.EnvVar{Name: name, Value: s.APIKey}
}

// APIKeySecretKey is the key of the API key in the agent's Secret.
const APIKeySecretKey = "api-key"

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
