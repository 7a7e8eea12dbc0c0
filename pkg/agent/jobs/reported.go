package jobs

import (
	"sort"
	"strings"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// reportedSet remembers per Job what has been reported, seeded from the
// Job's annotation so that what an earlier agent reported counts too, and
// which lines were written whose state change has not landed yet.
type reportedSet struct {
	mu      sync.Mutex
	byUID   map[types.UID]map[string]bool
	written map[types.UID]map[string]bool
	uids    map[string]types.UID
	// first is each Job's first pod, to tell replacements from it.
	first map[types.UID]string
}

func newReportedSet() *reportedSet {
	return &reportedSet{byUID: map[types.UID]map[string]bool{}, written: map[types.UID]map[string]bool{},
		uids: map[string]types.UID{}, first: map[types.UID]string{}}
}

// firstPod returns the Job's first pod, taking the oldest of pods when the
// agent has not seen one yet.
func (r *reportedSet) firstPod(job *batchv1.Job, pods []*corev1.Pod) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name, ok := r.first[job.UID]; ok {
		return name
	}
	var oldest *corev1.Pod
	for _, p := range pods {
		if oldest == nil || p.CreationTimestamp.Before(&oldest.CreationTimestamp) {
			oldest = p
		}
	}
	if oldest == nil {
		return ""
	}
	r.first[job.UID] = oldest.Name
	return oldest.Name
}

// setFor returns the Job's set, creating it and seeding it from the
// annotation. Callers hold r.mu.
func (r *reportedSet) setFor(job *batchv1.Job) map[string]bool {
	set := r.byUID[job.UID]
	if set == nil {
		set = map[string]bool{}
		r.byUID[job.UID] = set
		r.uids[job.Namespace+"/"+job.Name] = job.UID
	}
	for _, k := range strings.Split(job.Annotations[AnnotationReported], ",") {
		if k != "" {
			set[k] = true
		}
	}
	return set
}

func (r *reportedSet) of(job *batchv1.Job) map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.setFor(job)
	out := make(map[string]bool, len(set))
	for k := range set {
		out[k] = true
	}
	return out
}

// add records problems whose report landed.
func (r *reportedSet) add(job *batchv1.Job, problems []problem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.setFor(job)
	for _, p := range problems {
		set[p.key] = true
		delete(r.written[job.UID], p.key)
	}
}

// keys lists the Job's reported problems, sorted.
func (r *reportedSet) keys(job *batchv1.Job) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.setFor(job)
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// logged tells whether a problem's line was written (its state may not be).
func (r *reportedSet) logged(job *batchv1.Job, key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written[job.UID][key]
}

func (r *reportedSet) markLogged(job *batchv1.Job, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written[job.UID] == nil {
		r.written[job.UID] = map[string]bool{}
	}
	r.written[job.UID][key] = true
}

func (r *reportedSet) forgetKey(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if uid, ok := r.uids[key]; ok {
		delete(r.byUID, uid)
		delete(r.written, uid)
		delete(r.first, uid)
		delete(r.uids, key)
	}
}
