package manifest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// Labels the agent puts on its Jobs and their pods.
const (
	LabelIdentifier = "prefect.io/identifier"
	LabelFlowRunID  = "prefect.io/flow_run_id"
	LabelFlowID     = "prefect.io/flow_id"
	// LabelAgent names the agent that created the Job (AgentSettings.Owner);
	// job management watches only its own.
	LabelAgent = "prefect.io/agent"
	// AnnotationFlowRunVersion records the run version the Job was made for.
	AnnotationFlowRunVersion = "prefect.io/flow-run-version"
	// AnnotationFlowName and AnnotationFlowRunName record the names shown in Prefect.
	AnnotationFlowName    = "prefect.io/flow-name"
	AnnotationFlowRunName = "prefect.io/flow-run-name"
	// FlowContainer is the container the flow runs in (else the first one).
	FlowContainer = "flow"
)

// BuildJob turns a flow run into its Job. It talks to no cluster and does no
// I/O of its own: a template the run config names by path is read through
// s.Loader. Warnings name what was dropped from a run config's template.
func BuildJob(ctx context.Context, s AgentSettings, run FlowRun) (*batchv1.Job, []string, error) {
	rc, err := ParseRunConfig(run.RunConfig)
	if err != nil {
		return nil, nil, err
	}
	tmpl, fromRunConfig, err := chooseTemplate(ctx, s, rc)
	if err != nil {
		return nil, nil, err
	}
	job := tmpl.Job
	sub := Submission{RunID: run.ID, Version: run.Version, Relaunch: run.Relaunch}
	name, err := sub.JobName(job.Name)
	if err != nil {
		return nil, nil, err
	}
	if job.Namespace != "" && job.Namespace != s.Namespace {
		return nil, nil, fmt.Errorf("the job template sets namespace %q but the agent creates Jobs in %q: remove metadata.namespace from the template or start the agent with -n %s", job.Namespace, s.Namespace, job.Namespace)
	}
	job.Name, job.GenerateName, job.Namespace = name, "", s.Namespace
	labels := sub.Labels()
	labels[LabelFlowID] = run.FlowID
	if s.Owner != "" {
		labels[LabelAgent] = s.Owner
	}
	job.Labels = merged(job.Labels, labels)
	job.Spec.Template.Labels = merged(job.Spec.Template.Labels, labels)
	annotations := sub.Annotations()
	if run.FlowName != "" {
		annotations[AnnotationFlowName] = run.FlowName
	}
	if run.Name != "" {
		annotations[AnnotationFlowRunName] = run.Name
	}
	job.Annotations = merged(job.Annotations, annotations)
	setGuardrails(job, s, run)

	pod := &job.Spec.Template.Spec
	setServiceAccount(pod, s, rc, fromRunConfig && tmpl.HasServiceAccountName)
	setPullSecrets(pod, s, rc, fromRunConfig && tmpl.HasImagePullSecrets)
	if pod.RestartPolicy == "" {
		pod.RestartPolicy = corev1.RestartPolicyNever
	}

	image, err := flowImage(run, rc, flowContainer(pod))
	if err != nil {
		return nil, nil, err
	}
	if _, err := reference.ParseNormalizedNamed(image); err != nil {
		return nil, nil, fmt.Errorf("image name %q is invalid (%v): fix the run config's image or the flow's storage", image, err)
	}
	if err := mergeFlowContainer(pod, s, run, rc, image); err != nil {
		return nil, nil, err
	}
	return job, tmpl.Warnings, nil
}

// chooseTemplate picks the run config's job_template, else its
// job_template_path, else the agent's template, else the built-in one. It
// tells whether the template came from the run config.
func chooseTemplate(ctx context.Context, s AgentSettings, rc RunConfig) (Template, bool, error) {
	switch {
	case rc.hasJobTemplate():
		t, err := DecodeTemplate(rc.JobTemplate, "from the run config's job_template", s.StrictTemplates)
		return t, true, err
	case rc.JobTemplatePath != "":
		if s.Loader == nil {
			return Template{}, true, fmt.Errorf("job template %s: this agent reads no job_template_path; give the run config a job_template instead", rc.JobTemplatePath)
		}
		data, err := s.Loader.Load(ctx, rc.JobTemplatePath)
		if err != nil {
			return Template{}, true, err
		}
		t, err := DecodeTemplate(data, rc.JobTemplatePath, s.StrictTemplates)
		return t, true, err
	case s.Template != nil:
		return Template{Job: s.Template.DeepCopy()}, false, nil
	}
	return Template{Job: DefaultTemplate()}, false, nil
}

func merged(into, add map[string]string) map[string]string {
	if into == nil {
		into = map[string]string{}
	}
	for k, v := range add {
		into[k] = v
	}
	return into
}

// setServiceAccount applies: run config, else the value of a run config
// template whose pod spec has the key (even null), else the agent's, else the
// template's.
func setServiceAccount(pod *corev1.PodSpec, s AgentSettings, rc RunConfig, keepTemplate bool) {
	switch {
	case rc.ServiceAccountName != nil:
		pod.ServiceAccountName = *rc.ServiceAccountName
	case keepTemplate:
	case s.ServiceAccountName != "":
		pod.ServiceAccountName = s.ServiceAccountName
	}
}

// setPullSecrets applies the same precedence to image pull secrets.
func setPullSecrets(pod *corev1.PodSpec, s AgentSettings, rc RunConfig, keepTemplate bool) {
	names := []string(nil)
	switch {
	case len(rc.ImagePullSecrets) > 0:
		names = rc.ImagePullSecrets
	case keepTemplate:
		return
	case len(s.ImagePullSecrets) > 0:
		names = s.ImagePullSecrets
	default:
		return
	}
	pod.ImagePullSecrets = nil
	for _, n := range names {
		pod.ImagePullSecrets = append(pod.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
	}
}

// FlowContainerIndex is the index of the container the flow runs in: the
// one named flow, else the first; -1 when there is none. Building a Job and
// inspecting its pods both choose by it.
func FlowContainerIndex(containers []corev1.Container) int {
	for i := range containers {
		if containers[i].Name == FlowContainer {
			return i
		}
	}
	if len(containers) == 0 {
		return -1
	}
	return 0
}

// flowContainer returns the flow container, creating one when the template
// has none and naming an unnamed one.
func flowContainer(pod *corev1.PodSpec) *corev1.Container {
	i := FlowContainerIndex(pod.Containers)
	if i < 0 {
		pod.Containers, i = []corev1.Container{{Name: FlowContainer}}, 0
	}
	if pod.Containers[i].Name == "" {
		pod.Containers[i].Name = FlowContainer
	}
	return &pod.Containers[i]
}

// flowImage picks the image: Docker storage, run config, template, then
// prefecthq/prefect tagged with the flow's core version.
func flowImage(run FlowRun, rc RunConfig, c *corev1.Container) (string, error) {
	img, err := dockerStorageImage(run.Storage)
	if err != nil || img != "" {
		return img, err
	}
	if rc.Image != "" {
		return rc.Image, nil
	}
	if c.Image != "" {
		return c.Image, nil
	}
	tag := run.CoreVersion
	if i := strings.Index(tag, "+"); i >= 0 {
		tag = tag[:i]
	}
	if tag == "" {
		tag = "latest"
	}
	return "prefecthq/prefect:" + tag, nil
}

// dockerStorageImage is the image a Docker storage names, "" for another
// storage. Like the original, a Docker storage without image_name or
// image_tag is an error rather than an untagged (latest) image.
func dockerStorageImage(storage []byte) (string, error) {
	var st struct {
		Type        string `json:"type"`
		RegistryURL string `json:"registry_url"`
		ImageName   string `json:"image_name"`
		ImageTag    string `json:"image_tag"`
	}
	if len(storage) == 0 || json.Unmarshal(storage, &st) != nil || st.Type != "Docker" {
		return "", nil
	}
	if st.ImageName == "" || st.ImageTag == "" {
		return "", fmt.Errorf("the flow's Docker storage is missing required fields image_name and image_tag (it has image_name %q, image_tag %q): register the flow again with a built and pushed Docker storage", st.ImageName, st.ImageTag)
	}
	img := st.ImageName
	if st.RegistryURL != "" {
		img = strings.TrimRight(st.RegistryURL, "/") + "/" + img
	}
	return img + ":" + st.ImageTag, nil
}

// flowArgs runs the flow; flows older than Prefect 0.13 used another command.
func flowArgs(coreVersion string) []string {
	var major, minor int
	if n, _ := fmt.Sscanf(coreVersion, "%d.%d", &major, &minor); n == 2 && major == 0 && minor < 13 {
		return []string{"prefect", "execute", "cloud-flow"}
	}
	return []string{"prefect", "execute", "flow-run"}
}

// mergeFlowContainer lays what the agent sets over the template's flow
// container with a strategic merge patch: env entries merge by name (the
// agent's first, in its order, then the template's that it does not set),
// resource maps merge key by key, everything else the template has is kept.
func mergeFlowContainer(pod *corev1.PodSpec, s AgentSettings, run FlowRun, rc RunConfig, image string) error {
	c := flowContainer(pod)
	env := flowEnv(s, run, rc, image)
	templateEnv := map[string]corev1.EnvVar{}
	for _, v := range c.Env {
		templateEnv[v.Name] = v
	}
	var order []map[string]string
	var envPatch []map[string]any
	for _, v := range env {
		order = append(order, map[string]string{"name": v.Name})
		entry := map[string]any{"name": v.Name}
		if v.ValueFrom != nil {
			entry["valueFrom"] = v.ValueFrom
			entry["value"] = nil
		} else {
			entry["value"] = v.Value
			if templateEnv[v.Name].ValueFrom != nil {
				entry["valueFrom"] = nil
			}
		}
		envPatch = append(envPatch, entry)
	}
	for _, v := range c.Env {
		if _, taken := templateEnv[v.Name]; taken && !hasName(env, v.Name) {
			order = append(order, map[string]string{"name": v.Name})
		}
	}
	resources, err := resourcePatch(s, rc)
	if err != nil {
		return err
	}
	patch := map[string]any{
		"name":                 c.Name,
		"image":                image,
		"args":                 flowArgs(run.CoreVersion),
		"env":                  envPatch,
		"$setElementOrder/env": order,
		"resources":            resources,
	}
	if policy := firstNonEmpty(rc.ImagePullPolicy, s.ImagePullPolicy); policy != "" {
		patch["imagePullPolicy"] = policy
	}
	original, err := json.Marshal(c)
	if err != nil {
		return err
	}
	patchJSON, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	out, err := strategicpatch.StrategicMergePatch(original, patchJSON, corev1.Container{})
	if err != nil {
		return fmt.Errorf("merging the flow container into the job template: %w", err)
	}
	var result corev1.Container
	if err := json.Unmarshal(out, &result); err != nil {
		return err
	}
	*c = result
	return nil
}

func hasName(env []corev1.EnvVar, name string) bool {
	for _, v := range env {
		if v.Name == name {
			return true
		}
	}
	return false
}

// resourcePatch holds the requests and limits to set: the run config's, else
// the agent's defaults. Values must be Kubernetes quantities.
func resourcePatch(s AgentSettings, rc RunConfig) (map[string]any, error) {
	requests, limits := map[string]string{}, map[string]string{}
	for _, r := range []struct {
		field, value string
		into         map[string]string
		key          corev1.ResourceName
	}{
		{"cpu_request", firstNonEmpty(rc.CPURequest, s.CPURequest), requests, corev1.ResourceCPU},
		{"cpu_limit", firstNonEmpty(rc.CPULimit, s.CPULimit), limits, corev1.ResourceCPU},
		{"memory_request", firstNonEmpty(rc.MemoryRequest, s.MemRequest), requests, corev1.ResourceMemory},
		{"memory_limit", firstNonEmpty(rc.MemoryLimit, s.MemLimit), limits, corev1.ResourceMemory},
	} {
		if r.value == "" {
			continue
		}
		if _, err := resource.ParseQuantity(r.value); err != nil {
			return nil, fmt.Errorf("%s %q is not a Kubernetes quantity (for example 500m or 2 for CPU, 512Mi or 4Gi for memory)", r.field, r.value)
		}
		r.into[string(r.key)] = r.value
	}
	patch := map[string]any{}
	if len(requests) > 0 {
		patch["requests"] = requests
	}
	if len(limits) > 0 {
		patch["limits"] = limits
	}
	return patch, nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// JobFinished tells whether a Job has completed or failed.
func JobFinished(job *batchv1.Job) bool {
	return ConditionsFinished(job.Status.Conditions)
}

// ConditionsFinished tells whether a Job's conditions say it completed or failed.
func ConditionsFinished(conditions []batchv1.JobCondition) bool {
	for _, c := range conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
