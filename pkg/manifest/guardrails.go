package manifest

import (
	"encoding/json"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
)

// Annotations the agent's guardrails read back from its Jobs.
const (
	// AnnotationFlowRunLabels records the run's labels (a JSON list), which
	// the agent's concurrency limits count by.
	AnnotationFlowRunLabels = "prefect.io/flow-run-labels"
	// AnnotationRunTimeLimit names the Job's run time limit and where it
	// comes from, for the line written when Kubernetes stops the Job for it.
	AnnotationRunTimeLimit = "prefect.io/run-time-limit"
	// AnnotationConcurrencyLimits records the agent's --limit values
	// ("10,label=gpu:2"), so `kubectl prefect jobs` can show them in use.
	AnnotationConcurrencyLimits = "prefect.io/concurrency-limits"
)

// setGuardrails records the run's labels on the Job and gives the Job its
// run time limit: the template's activeDeadlineSeconds when it sets one,
// else the agent's --max-run-time.
func setGuardrails(job *batchv1.Job, s AgentSettings, run FlowRun) {
	if len(run.Labels) > 0 {
		raw, _ := json.Marshal(run.Labels)
		job.Annotations[AnnotationFlowRunLabels] = string(raw)
	}
	if s.Limits != "" {
		job.Annotations[AnnotationConcurrencyLimits] = s.Limits
	}
	switch {
	case job.Spec.ActiveDeadlineSeconds != nil:
		d := time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second
		job.Annotations[AnnotationRunTimeLimit] = fmt.Sprintf("%s (the job template's activeDeadlineSeconds)", d)
	case s.MaxRunTime > 0:
		secs := int64((s.MaxRunTime + time.Second - 1) / time.Second)
		job.Spec.ActiveDeadlineSeconds = &secs
		job.Annotations[AnnotationRunTimeLimit] = fmt.Sprintf("%s (--max-run-time)", time.Duration(secs)*time.Second)
	}
}

// RunTimeLimit reads a Job's run time limit in seconds from its annotation's
// text ("30s (--max-run-time)"); ok is false when it has none.
func RunTimeLimit(annotation string) (time.Duration, bool) {
	for i := range annotation {
		if annotation[i] == ' ' {
			annotation = annotation[:i]
			break
		}
	}
	d, err := time.ParseDuration(annotation)
	return d, err == nil && d > 0
}
