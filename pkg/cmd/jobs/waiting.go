package jobs

import (
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	agentjobs "github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// waitingStatus is the STATUS of a Job the agent records as waiting on
// purpose, e.g. "Waiting (quota) 3m", and false for any other Job.
func waitingStatus(job *batchv1.Job, now time.Time) (string, bool) {
	reason := job.Annotations[agentjobs.AnnotationWaitingReason]
	if reason == "" || manifest.JobFinished(job) {
		return "", false
	}
	since, err := time.Parse(time.RFC3339, job.Annotations[agentjobs.AnnotationWaitingSince])
	if err != nil {
		return fmt.Sprintf("Waiting (%s)", reason), true
	}
	return fmt.Sprintf("Waiting (%s) %s", reason, duration.HumanDuration(now.Sub(since))), true
}
