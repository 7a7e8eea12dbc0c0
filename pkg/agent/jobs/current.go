package jobs

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// currentSubmission tells whether job belongs to its run's current
// submission, read from the run's state history by the claim rule: the
// run's latest winning Submitted mark was made from this Job's namespace for
// the Scheduled state the Job was made for (a relaunch: no new submission
// since it). A mark that records no submission is judged by version alone.
// When the Job is not the current submission's, it says why. Only the
// current submission's Job may fail or reschedule the run.
func (c *Controller) currentSubmission(ctx context.Context, job *batchv1.Job, runID string) (bool, string, error) {
	sub, ok := manifest.SubmissionOf(job)
	if !ok {
		return true, "", nil // a Job that does not say which submission it is: as before
	}
	h, err := c.prefect.ReadHistory(ctx, runID, nil)
	if err != nil {
		return false, "", err
	}
	_, by, claim, ok := prefect.CurrentSubmission(h.Rows)
	switch {
	case !ok:
		return false, "the run has no Submitted mark that won it", nil
	case by.Token != "" && by.Namespace != job.Namespace:
		// A mark without submitted_by (1.4.1, or a tool) names no
		// namespace: the version alone decides.
		return false, fmt.Sprintf("the run was last submitted by %s", by.Describe()), nil
	case sub.Relaunch != "" && claim.Version < sub.Version:
		return true, "", nil
	case sub.Relaunch == "" && claim.Version == sub.Version:
		return true, "", nil
	}
	return false, fmt.Sprintf("the run was submitted again since (from its state at version %d)", claim.Version), nil
}
