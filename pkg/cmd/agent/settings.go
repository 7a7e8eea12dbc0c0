package agent

import "github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"

// SettingsFlags are the agent settings shared by start, render and install;
// they live in pkg/agentcli with the prefect-agent binary.
type SettingsFlags = agentcli.SettingsFlags

// TemplateFlags fence in run configs' templates, for start and render.
type TemplateFlags = agentcli.TemplateFlags

// envFallbacks are the settings' environment variables.
var envFallbacks = agentcli.SettingsEnvFallbacks
