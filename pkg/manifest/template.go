package manifest

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

//go:embed default-job-template.yaml
var defaultTemplate []byte

// TemplateLoader reads the bytes of the Job template a run config names by
// location (job_template_path). The agent injects one (pkg/jobtemplate), so
// that building a Job does no I/O of its own.
type TemplateLoader interface {
	Load(ctx context.Context, location string) ([]byte, error)
}

// Template is a parsed Job template.
type Template struct {
	Job *batchv1.Job
	// Warnings name the fields a Job does not have, dropped from the template
	// as the API server drops them (lenient parsing only).
	Warnings []string
	// HasServiceAccountName and HasImagePullSecrets tell whether the pod spec
	// holds the key at all (even null): a run config's template with the key
	// keeps its own value, as in the original agent.
	HasServiceAccountName, HasImagePullSecrets bool
}

// DefaultTemplate is the built-in Job template: one container named flow.
func DefaultTemplate() *batchv1.Job {
	job, err := ParseTemplate(defaultTemplate, "the built-in template")
	if err != nil {
		panic(err) // the embedded file is part of the program
	}
	return job
}

// ParseTemplate reads a Job template from YAML or JSON with Kubernetes' own
// types, rejecting fields a Job does not have.
func ParseTemplate(data []byte, source string) (*batchv1.Job, error) {
	t, err := DecodeTemplate(data, source, true)
	return t.Job, err
}

// DecodeTemplate reads a Job template from YAML or JSON with Kubernetes' own
// types, case-sensitively as the API server does. Fields a Job does not have
// are refused when strict, else dropped and named in Warnings.
func DecodeTemplate(data []byte, source string, strict bool) (Template, error) {
	var warnings []string
	raw, err := yaml.YAMLToJSONStrict(data)
	if err != nil && !strict {
		// Duplicate keys: like the original's YAML reader, the last one wins.
		if lenient, lenientErr := yaml.YAMLToJSON(data); lenientErr == nil {
			msg := strings.TrimPrefix(strings.TrimPrefix(oneLine(err), "error converting YAML to JSON: "), "yaml: unmarshal errors: ")
			warnings = append(warnings, fmt.Sprintf("job template %s: %s, the last value is used", source, msg))
			raw, err = lenient, nil
		}
	}
	if err != nil {
		return Template{}, fmt.Errorf("job template %s is not valid YAML or JSON: %s", source, oneLine(err))
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		raw = []byte("{}")
	}
	var job batchv1.Job
	strictErrs, err := kjson.UnmarshalStrict(raw, &job, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return Template{}, fmt.Errorf("job template %s is not a valid Job: %v", source, err)
	}
	var unknown []string
	for _, e := range strictErrs {
		unknown = append(unknown, e.Error())
	}
	if len(unknown) > 0 && strict {
		return Template{}, fmt.Errorf("job template %s has fields a Job does not have: %s (fix the template, or run the agent without --strict-templates to drop them with a warning)", source, strings.Join(unknown, ", "))
	}
	if job.Kind != "" && job.Kind != "Job" {
		return Template{}, fmt.Errorf("job template %s is a %s, it must be a Job (apiVersion: batch/v1, kind: Job)", source, job.Kind)
	}
	if job.APIVersion != "" && job.APIVersion != "batch/v1" {
		return Template{}, fmt.Errorf("job template %s has apiVersion %s, it must be batch/v1", source, job.APIVersion)
	}
	job.APIVersion, job.Kind = "batch/v1", "Job"
	t := Template{Job: &job, Warnings: warnings}
	for _, u := range unknown {
		t.Warnings = append(t.Warnings, fmt.Sprintf("job template %s: %s, dropped", source, u))
	}
	var keys struct {
		Spec struct {
			Template struct {
				Spec map[string]any `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &keys); err == nil {
		_, t.HasServiceAccountName = keys.Spec.Template.Spec["serviceAccountName"]
		_, t.HasImagePullSecrets = keys.Spec.Template.Spec["imagePullSecrets"]
	}
	return t, nil
}

// oneLine puts a multi-line parser error on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
