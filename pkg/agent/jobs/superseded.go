package jobs

import (
	batchv1 "k8s.io/api/batch/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// newerSubmission names the run's Job in job's namespace made for a
// submission that supersedes job's (manifest.Submission.Supersedes) when job
// has not finished, else "".
func (c *Controller) newerSubmission(job *batchv1.Job, runID string) string {
	sub, ok := manifest.SubmissionOf(job)
	if !ok || manifest.JobFinished(job) {
		return ""
	}
	objs, _ := c.jobs.GetIndexer().ByIndex(byFlowRun, runID)
	for _, o := range objs {
		other, ok := o.(*cachedJob)
		if !ok || other.Namespace != job.Namespace || other.DeletionTimestamp != nil {
			continue
		}
		if newer, ok := manifest.SubmissionOf(other.job()); ok && newer.Supersedes(sub) {
			return other.Name
		}
	}
	return ""
}
