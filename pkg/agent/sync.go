package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// AnnotationReported lists, on a Job, the problems already reported to its
// flow run, so a restarted agent or a second one does not report them again.
const AnnotationReported = "prefect.io/reported"

// Keys of what the agent did to a Job, recorded with its reported problems.
const (
	keyCompleted = "job/completed"
	keyCancelled = "job/cancelled"
)

// sync looks at one Job and reports, cleans up or waits as needed.
func (m *manager) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	job, err := m.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		m.reported.forgetKey(key)
		m.takeGone(key)
		return nil
	}
	if err != nil {
		return err
	}
	runID := job.Labels[manifest.LabelFlowRunID]
	if runID == "" || job.DeletionTimestamp != nil {
		return nil
	}
	pods, err := m.jobPods(job)
	if err != nil {
		return err
	}
	for _, gone := range m.takeGone(key) {
		// Seen as deleted: report it like a pod marked for deletion.
		gone = gone.DeepCopy()
		if gone.DeletionTimestamp == nil {
			now := metav1.NewTime(m.a.cfg.Now())
			gone.DeletionTimestamp = &now
		}
		pods = append(pods, gone)
	}
	in := inspect(job, pods, m.jobEvents(job), m.reported.firstPod(job, pods), m.a.cfg.Now(), m.cfg.UnschedulableGrace)
	done := m.reported.of(job)

	var fresh []problem
	for _, p := range in.problems {
		if !done[p.key] {
			fresh = append(fresh, p)
		}
	}
	if in.complete && !done[keyCompleted] {
		fresh = append(fresh, problem{key: keyCompleted, level: prefect.LevelWarning, unlessFinished: true, reason: "Completed",
			message: fmt.Sprintf("Job %s completed but the flow run never reported a final state: the flow's process exited without reporting", job.Name)})
	}
	if len(fresh) > 0 {
		if err := m.report(ctx, job, runID, fresh); err != nil {
			return err
		}
	}
	// Any error, reported now or before (a failed Job is one), fails the Job.
	failedRun := false
	for _, p := range in.problems {
		failedRun = failedRun || p.level == prefect.LevelError
	}
	if in.recheck > 0 {
		m.queue.AddAfter(key, in.recheck)
	}
	switch {
	case in.complete && m.cfg.DeleteFinishedJobs:
		return m.deleteJob(ctx, job, "completed")
	case failedRun && m.cfg.DeleteFinishedJobs && !m.cfg.KeepFailedJobs:
		return m.deleteJob(ctx, job, "failed")
	}
	return nil
}

// report writes fresh problems to the flow run, fails it on an error unless
// it has finished, and records them on the Job.
func (m *manager) report(ctx context.Context, job *batchv1.Job, runID string, fresh []problem) error {
	log := klog.FromContext(ctx).WithValues("job", klog.KObj(job), "flowRun", runID)
	states, err := m.a.cfg.Prefect.FlowRunStates(ctx, []string{runID})
	if err != nil {
		return err
	}
	state, exists := states[runID]
	if !exists {
		log.Info("The Job's flow run no longer exists in Prefect; leaving the Job alone")
		return m.record(ctx, job, fresh)
	}
	for _, p := range fresh {
		if p.unlessFinished && prefect.Finished(state.State) {
			continue
		}
		log.Info("Reporting a problem to the flow run", "reason", p.reason, "message", p.message)
		m.a.runLog(ctx, runID, p.level, p.message)
		m.a.metrics.failuresReported.WithLabelValues(p.reason).Inc()
		if p.level != prefect.LevelError || prefect.Finished(state.State) {
			continue
		}
		version := state.Version
		if err := m.a.cfg.Prefect.SetFlowRunState(ctx, runID, &version, prefect.FailedState(p.message)); err != nil {
			log.Error(err, "Could not set the flow run Failed")
			continue
		}
		state.State, state.Version = "Failed", state.Version+1
	}
	return m.record(ctx, job, fresh)
}

// record adds problem keys to the Job's annotation and to memory.
func (m *manager) record(ctx context.Context, job *batchv1.Job, problems []problem) error {
	keys := m.reported.add(job, problems)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationReported: strings.Join(keys, ",")}}})
	_, err := m.a.cfg.Kube.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// deleteJob removes a finished Job and, in the background, its pods.
func (m *manager) deleteJob(ctx context.Context, job *batchv1.Job, why string) error {
	policy := metav1.DeletePropagationBackground
	err := m.a.cfg.Kube.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &job.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return err
	}
	m.a.metrics.jobsDeleted.WithLabelValues(why).Inc()
	klog.FromContext(ctx).V(1).Info("Deleted finished Job", "job", klog.KObj(job), "why", why)
	return nil
}

// reportedSet remembers per Job what has been reported, seeded from the
// Job's annotation so that what an earlier agent reported counts too.
type reportedSet struct {
	mu    sync.Mutex
	byUID map[types.UID]map[string]bool
	uids  map[string]types.UID
	// first is each Job's first pod, to tell replacements from it.
	first map[types.UID]string
}

func newReportedSet() *reportedSet {
	return &reportedSet{byUID: map[types.UID]map[string]bool{}, uids: map[string]types.UID{}, first: map[types.UID]string{}}
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

// setFor returns the Job's set, creating it. Callers hold r.mu.
func (r *reportedSet) setFor(job *batchv1.Job) map[string]bool {
	set := r.byUID[job.UID]
	if set == nil {
		set = map[string]bool{}
		r.byUID[job.UID] = set
		r.uids[job.Namespace+"/"+job.Name] = job.UID
	}
	return set
}

func (r *reportedSet) of(job *batchv1.Job) map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.setFor(job)
	for _, k := range strings.Split(job.Annotations[AnnotationReported], ",") {
		if k != "" {
			set[k] = true
		}
	}
	out := make(map[string]bool, len(set))
	for k := range set {
		out[k] = true
	}
	return out
}

func (r *reportedSet) add(job *batchv1.Job, problems []problem) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.setFor(job)
	for _, p := range problems {
		set[p.key] = true
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (r *reportedSet) forgetKey(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if uid, ok := r.uids[key]; ok {
		delete(r.byUID, uid)
		delete(r.first, uid)
		delete(r.uids, key)
	}
}
