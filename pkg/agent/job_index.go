package agent

import (
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// JobIndex is all the submitter reads of the Job controller's cache
// (jobs.Index). Both answers say false while the cache has not synced (and
// once the controller stopped): the submitter then asks the API server, or
// waits.
type JobIndex interface {
	// RunJobs returns the run's Jobs in namespace (metav1.NamespaceAll: in
	// every namespace the controller watches).
	RunJobs(namespace, runID string) ([]*batchv1.Job, bool)
	// Unfinished returns the metadata of the Jobs that have neither
	// finished nor are being deleted. It is the cache's own: read only.
	Unfinished() ([]metav1.Object, bool)
}
