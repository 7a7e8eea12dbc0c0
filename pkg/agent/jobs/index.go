package jobs

import (
	"sync/atomic"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Index is the submitter's view of the controller's Job cache. It outlives
// a controller: each one publishes its cache once synced and withdraws it
// when it stops, and until then the Index answers false.
type Index struct{ jobs atomic.Pointer[cache.Indexer] }

// publish makes a synced cache the index's; nil withdraws it.
func (x *Index) publish(jobs cache.Indexer) {
	if jobs == nil {
		x.jobs.Store(nil)
		return
	}
	x.jobs.Store(&jobs)
}

// RunJobs returns the run's Jobs in namespace (metav1.NamespaceAll: in every
// namespace the controller watches), false while no cache is published.
func (x *Index) RunJobs(namespace, runID string) ([]*batchv1.Job, bool) {
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

// Unfinished returns the metadata of the Jobs that have neither finished nor
// are being deleted, false while no cache is published. The objects are the
// cache's own: read only.
func (x *Index) Unfinished() ([]metav1.Object, bool) {
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
