package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

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

// AnnotationWaitingReason and AnnotationWaitingSince record, on a Job whose
// flow has not started, why it waits (quota, unschedulable, ...) and since
// when (RFC 3339); `kubectl prefect jobs` shows them.
const (
	AnnotationWaitingReason = "prefect.io/waiting-reason"
	AnnotationWaitingSince  = "prefect.io/waiting-since"
)

// Keys of what the agent did to a Job, recorded with its reported problems.
const (
	keyCompleted = "job/completed"
	keyCancelled = "job/cancelled"
)

// sync looks at one Job and reports, cleans up or waits as needed. It
// returns an error, and the Job is requeued rate-limited, while a report has
// not been accepted by Prefect; a Job is never deleted before that.
func (m *manager) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	job, err := m.getJob(ns, name)
	if apierrors.IsNotFound(err) {
		m.reported.forgetKey(key)
		m.takeGone(key)
		m.waits.forget(key)
		m.held.set(key, "", false)
		return nil
	}
	if err != nil {
		return err
	}
	runID := job.Labels[manifest.LabelFlowRunID]
	if runID == "" || job.DeletionTimestamp != nil {
		m.waits.forget(key)
		m.held.set(key, "", false)
		return nil
	}
	if newer := m.newerSubmission(job, runID); newer != "" {
		// The run was submitted again and the submission could not delete
		// this Job: it must neither run nor report on the new submission.
		deleted, err := m.removeJob(ctx, job, "superseded")
		if err != nil || !deleted {
			return err
		}
		msg := fmt.Sprintf("Deleted Job %s of an earlier submission, which had not finished: the run was submitted again and only Job %s may run it", job.Name, newer)
		m.a.events.on(job, corev1.EventTypeNormal, EventSuperseded, msg)
		m.a.runLog(ctx, runID, prefect.LevelInfo, msg)
		return nil
	}
	facts := m.facts(job)
	for _, gone := range m.peekGone(key) {
		// Seen as deleted: inspect it like a pod marked for deletion.
		gone = gone.DeepCopy()
		if gone.DeletionTimestamp == nil {
			now := metav1.NewTime(m.a.cfg.Now())
			gone.DeletionTimestamp = &now
		}
		facts.pods = append(facts.pods, gone)
	}
	facts.firstPod = m.reported.firstPod(job, facts.pods)
	done := m.reported.of(job)
	for k := range done {
		facts.disrupted = facts.disrupted || strings.HasSuffix(k, "/disrupted")
	}
	in := inspect(job, facts, m.a.cfg.Now(), m.policy)

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
			return fmt.Errorf("reporting to flow run %s: %w", runID, err)
		}
	}
	m.takeGone(key)
	m.waits.set(key, in.waiting)
	m.held.set(key, runID, holds(job, in) && !giveUpIn(in))
	recordErr := m.record(ctx, job, in.waiting)

	failedRun, giveUp := false, false
	for _, p := range in.problems {
		failedRun = failedRun || p.level == prefect.LevelError
		giveUp = giveUp || p.giveUp
	}
	if in.recheck > 0 {
		m.queue.AddAfter(key, in.recheck)
	}
	switch {
	case giveUp:
		// The flow never started; its pod must not start after the run failed.
		return errors.Join(recordErr, m.deleteJob(ctx, job, "gave-up"))
	case in.complete && m.cfg.DeleteFinishedJobs:
		return errors.Join(recordErr, m.deleteJob(ctx, job, "completed"))
	case (failedRun || manifest.JobFinished(job)) && m.cfg.DeleteFinishedJobs && !m.cfg.KeepFailedJobs:
		// A failed flow (as in 1.4.1, one failed pod finishes the Job) or a failed Job.
		return errors.Join(recordErr, m.deleteJob(ctx, job, "failed"))
	}
	return recordErr
}

// report writes fresh problems to the flow run and fails (or reschedules)
// it, unless it has finished. A problem counts as reported only once Prefect
// accepted its log line and its state; any other outcome is an error.
func (m *manager) report(ctx context.Context, job *batchv1.Job, runID string, fresh []problem) error {
	log := klog.FromContext(ctx).WithValues("job", klog.KObj(job), "flowRun", runID)
	state, exists, err := m.runState(ctx, runID)
	if err != nil {
		return err
	}
	if !exists {
		log.Info("The Job's flow run no longer exists in Prefect; nothing to report to")
		m.reported.add(job, fresh)
		return nil
	}
	if changesState(fresh) && !prefect.Finished(state.State) {
		current, why, err := m.currentSubmission(ctx, job, runID)
		if err != nil {
			return err
		}
		if !current {
			// A Job of an earlier submission (another namespace's, or one
			// the run was submitted again after) must not fail the run's
			// current submission: one line, and nothing else.
			log.Info("Not reporting to the flow run: the Job is not its current submission", "why", why, "problem", fresh[0].reason)
			if err := m.writeLog(ctx, runID, prefect.LevelWarning, fmt.Sprintf("Job %s, of an earlier submission of this run, reports: %s. The run's current submission is left alone: %s", job.Name, fresh[0].message, why)); err != nil {
				return err
			}
			m.reported.add(job, fresh)
			return nil
		}
	}
	for _, p := range fresh {
		logged := m.reported.logged(job, p.key)
		if !logged && p.unlessFinished && prefect.Finished(state.State) {
			m.reported.add(job, []problem{p})
			continue
		}
		if p.key == keyCompleted && state.State == "Running" {
			// A flow whose task run retries later exits and leaves the run
			// Running (Prefect 1): not necessarily a flow that failed to report.
			p.message = fmt.Sprintf("Job %s completed while the flow run is Running: if a task run waits for a retry, the agent relaunches the run when the retry is due; otherwise the flow's process exited without reporting a final state", job.Name)
		}
		if !logged {
			log.Info("Reporting to the flow run", "reason", p.reason, "level", p.level, "message", p.message)
			if err := m.writeLog(ctx, runID, p.level, p.message); err != nil {
				return err
			}
			m.reported.markLogged(job, p.key)
			m.a.metrics.failuresReported.WithLabelValues(p.reason).Inc()
			m.a.events.on(job, corev1.EventTypeWarning, p.eventReason(), p.message)
			if p.failedPod != "" {
				m.saveEvidence(ctx, job, runID, p)
			}
		}
		if handsBack(p) && !m.reported.of(job)[p.key] {
			if err := m.handBack(ctx, runID, job.Name); err != nil {
				return err
			}
		}
		if p.level == prefect.LevelError || p.reschedule {
			next := prefect.FailedState(p.message)
			if p.reschedule {
				next = prefect.ScheduledState(p.message, m.a.cfg.Now())
			}
			if state, err = m.setState(ctx, runID, state, next); err != nil {
				return err
			}
		}
		m.reported.add(job, []problem{p})
	}
	return nil
}

// giveUpIn tells whether the inspection gives up on the Job.
func giveUpIn(in inspection) bool {
	for _, p := range in.problems {
		if p.giveUp {
			return true
		}
	}
	return false
}

// changesState tells whether reporting problems would change the run's state.
func changesState(problems []problem) bool {
	for _, p := range problems {
		if p.level == prefect.LevelError || p.reschedule {
			return true
		}
	}
	return false
}

// setState sets the run's state unless it finished, re-reading the run and
// trying again when another writer changed it first (version locking).
func (m *manager) setState(ctx context.Context, runID string, state prefect.RunState, next json.RawMessage) (prefect.RunState, error) {
	for attempt := 0; ; attempt++ {
		if prefect.Finished(state.State) {
			return state, nil
		}
		version := state.Version
		err := m.a.cfg.Prefect.SetFlowRunState(ctx, runID, &version, next)
		if err == nil {
			state.State, state.Version = prefect.StateType(next), state.Version+1
			return state, nil
		}
		if !errors.Is(err, prefect.ErrVersionLocked) || attempt >= 3 {
			return state, err
		}
		fresh, exists, readErr := m.runState(ctx, runID)
		if readErr != nil {
			return state, readErr
		}
		if !exists {
			return state, nil
		}
		state = fresh
	}
}

// runState reads one run's current state.
func (m *manager) runState(ctx context.Context, runID string) (prefect.RunState, bool, error) {
	states, err := m.a.cfg.Prefect.FlowRunStates(ctx, []string{runID})
	if err != nil {
		return prefect.RunState{}, false, err
	}
	st, ok := states[runID]
	return st, ok, nil
}

// writeLog writes one line to the run's log under the agent's name.
func (m *manager) writeLog(ctx context.Context, runID, level, message string) error {
	return m.a.cfg.Prefect.WriteRunLogs(ctx, prefect.RunLog{FlowRunID: runID, Name: m.a.cfg.Name, Level: level, Message: message, Time: m.a.cfg.Now()})
}

// record brings the Job's annotations up to date: the reported problems and
// why it waits. The patch is retried (through the queue) until it lands.
func (m *manager) record(ctx context.Context, job *batchv1.Job, w *waiting) error {
	annotations := map[string]any{}
	keys := m.reported.keys(job)
	if joined := strings.Join(keys, ","); joined != job.Annotations[AnnotationReported] && len(keys) > 0 {
		annotations[AnnotationReported] = joined
	}
	reason, since := "", ""
	if w != nil {
		reason, since = w.reason, w.since.UTC().Format(time.RFC3339)
	}
	if job.Annotations[AnnotationWaitingReason] != reason || job.Annotations[AnnotationWaitingSince] != since {
		annotations[AnnotationWaitingReason], annotations[AnnotationWaitingSince] = nullIfEmpty(reason), nullIfEmpty(since)
	}
	if len(annotations) == 0 {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	_, err := m.a.cfg.Kube.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("recording on Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	return nil
}

// nullIfEmpty makes a merge patch remove an annotation that has no value.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// deleteJob removes a Job and, in the background, its pods.
func (m *manager) deleteJob(ctx context.Context, job *batchv1.Job, why string) error {
	_, err := m.removeJob(ctx, job, why)
	return err
}

// removeJob is deleteJob that also says whether this call deleted the Job
// (false when it was gone or replaced already).
func (m *manager) removeJob(ctx context.Context, job *batchv1.Job, why string) (bool, error) {
	policy := metav1.DeletePropagationBackground
	err := m.a.cfg.Kube.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &job.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("deleting Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	m.a.metrics.jobsDeleted.WithLabelValues(why).Inc()
	m.a.events.on(job, corev1.EventTypeNormal, EventDeleted, "Deleted by the agent: "+deletedBecause(why))
	klog.FromContext(ctx).V(1).Info("Deleted Job", "job", klog.KObj(job), "why", why)
	return true, nil
}

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

// newerSubmission names the run's Job in job's namespace made for a
// submission that supersedes job's (manifest.Submission.Supersedes) when job
// has not finished, else "".
func (m *manager) newerSubmission(job *batchv1.Job, runID string) string {
	sub, ok := manifest.SubmissionOf(job)
	if !ok || manifest.JobFinished(job) {
		return ""
	}
	objs, _ := m.jobs.GetIndexer().ByIndex(byFlowRun, runID)
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
