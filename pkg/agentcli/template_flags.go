package agentcli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/jobtemplate"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// TemplateFlags fence in the Job templates run configs name and choose how
// strictly templates are read.
type TemplateFlags struct {
	AllowedLocations []string
	StrictTemplates  bool

	// Complete's results: the agent's own --job-template, the fenced
	// loader, and why the loader could not be built (Validate reports it).
	jobTemplate string
	loader      *jobtemplate.Loader
	loaderErr   error
}

// templateEnvFallbacks are the environment variables of the template flags.
var templateEnvFallbacks = map[string][]string{
	"allowed-template-locations": {"ALLOWED_TEMPLATE_LOCATIONS"},
	"strict-templates":           {"STRICT_TEMPLATES"},
}

// AddFlags registers the template flags.
func (f *TemplateFlags) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.AllowedLocations, "allowed-template-locations", nil,
		"Locations a run config's job_template_path may name, as prefixes: a directory, https://host/dir/, s3://bucket/dir/, gs://bucket/dir/, or a scheme alone (https://, s3://) for any host or bucket; "+
			"repeat or separate with commas; none allows nothing. Default: https://, http://, s3:// and gs:// (HTTP only to public addresses) and the directory of --job-template [ALLOWED_TEMPLATE_LOCATIONS]")
	fs.BoolVar(&f.StrictTemplates, "strict-templates", false,
		"Fail runs whose job template has fields a Job does not have, instead of dropping them with a WARNING line on the run [STRICT_TEMPLATES]")
}

// Complete reads the environment fallbacks and builds the loader fenced to
// the allowed locations; jobTemplate is the agent's own --job-template, whose
// directory is allowed by default.
func (f *TemplateFlags) Complete(fs *pflag.FlagSet, jobTemplate string) error {
	if err := applyEnvFallbacks(fs, templateEnvFallbacks); err != nil {
		return err
	}
	if fs.Changed("allowed-template-locations") || os.Getenv("ALLOWED_TEMPLATE_LOCATIONS") != "" {
		f.AllowedLocations = stripItems(f.AllowedLocations)
		if f.AllowedLocations == nil {
			f.AllowedLocations = []string{"none"}
		}
	}
	f.jobTemplate = jobTemplate
	f.loader, f.loaderErr = jobtemplate.New(jobtemplate.Options{Allowed: f.AllowedLocations, AgentTemplate: jobTemplate})
	return nil
}

// Validate checks the allowed locations.
func (f *TemplateFlags) Validate() error {
	return f.loaderErr
}

// Apply loads the agent's own --job-template (trusted: the operator chose
// it) into s and gives s the fenced loader for run configs' templates, both
// as Complete found them. It returns what lenient parsing dropped from the
// agent's template.
func (f *TemplateFlags) Apply(ctx context.Context, s *manifest.AgentSettings) (warnings []string, err error) {
	if f.loaderErr != nil {
		return nil, f.loaderErr
	}
	if f.loader == nil {
		return nil, errors.New("the template flags were applied before Complete built their loader (a bug in the command)")
	}
	s.Loader, s.StrictTemplates = f.loader, f.StrictTemplates
	jobTemplate := f.jobTemplate
	if jobTemplate == "" {
		return nil, nil
	}
	data, err := f.loader.LoadTrusted(ctx, jobTemplate)
	if err != nil {
		return nil, fmt.Errorf("--job-template: %w", err)
	}
	t, err := manifest.DecodeTemplate(data, jobTemplate, f.StrictTemplates)
	if err != nil {
		return nil, fmt.Errorf("--job-template: %w", err)
	}
	s.Template = t.Job
	return t.Warnings, nil
}

// stripItems trims each item of a comma list and drops empty ones, as the
// original agent read IMAGE_PULL_SECRETS.
func stripItems(items []string) []string {
	var out []string
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
