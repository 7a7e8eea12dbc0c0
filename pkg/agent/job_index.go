package agent

import (
	"sync/atomic"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// JobIndex is all the submitter reads of the Job controller's cache. Both
// answers say false while the cache has not synced (and once the controller
// stopped): the submitter then asks the API server, or waits.
type JobIndex interface {
	// RunJobs returns the run's Jobs in namespace (metav1.NamespaceAll: in
	// every namespace the controller watches).
	RunJobs(namespace, runID string) ([]*batchv1.Job, bool)
	// Unfinished returns the metadata of the Jobs that have neither
	// finished nor are being deleted. It is the cache's own: read only.
	Unfinished() ([]metav1.Object, bool)
}

// jobIndex is the JobIndex over the controller's synced Job cache.
type jobIndex struct{ jobs atomic.Pointer[cache.Indexer] }

// publish makes a synced cache the index's; nil withdraws it.
func (x *jobIndex) publish(jobs cache.Indexer) {
	if jobs == nil {
		x.jobs.Store(nil)
		return
	}
	x.jobs.Store(&jobs)
}

func (x *jobIndex) RunJobs(namespace, runID string) ([]*batchv1.Job, bool) {
	p := x.jobs.Load()
	if p == nil {
		return nil, false
	}
	objs, err := (*p).ByIndex(byFlowRun, runID)
	if err != nil {
		return nil, false
	}
	var out []*batchv1.Job
	for _, o := range objs {
		if j, ok := o.(*cachedJob); ok && (namespace == metav1.NamespaceAll || j.Namespace == namespace) {
			out = append(out, j.job())
		}
	}
	return out, true
}

func (x *jobIndex) Unfinished() ([]metav1.Object, bool) {
	p := x.jobs.Load()
	if p == nil {
		return nil, false
	}
	var out []metav1.Object
	for _, o := range (*p).List() {
		if j, ok := o.(*cachedJob); ok && !j.finished() && j.DeletionTimestamp == nil {
			out = append(out, j)
		}
	}
	return out, true
}
