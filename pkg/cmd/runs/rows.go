package runs

import (
	"fmt"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Drift kinds: Prefect and the cluster disagree about a run.
const (
	// DriftRunningWithoutPod: Prefect shows the run Running, but no pod of
	// its Jobs runs or may start (the pod died without a word, or its Job is gone).
	DriftRunningWithoutPod = "RunningWithoutPod"
	// DriftSubmittedWithoutJob: Prefect shows the run Submitted by this
	// agent, and no Job of it exists here.
	DriftSubmittedWithoutJob = "SubmittedWithoutJob"
	// DriftFinishedPodRunning: the run finished in Prefect (Success, Failed,
	// Cancelled...) while a pod of it still runs.
	DriftFinishedPodRunning = "FinishedPodRunning"
	// DriftJobFailed: the run's Job failed while Prefect shows it Running.
	DriftJobFailed = "JobFailedRunRunning"
)

// row is one flow run as `runs` shows it.
type row struct {
	Namespace      string
	RunID          string
	Name, Flow     string
	State          string
	StateTimestamp time.Time
	// Jobs are the run's Jobs here, oldest first (one per attempt).
	Jobs []*batchv1.Job
	// Pod is the newest pod of the newest Job.
	Pod   *corev1.Pod
	Drift []string
	// known: Prefect answered for this run.
	known bool
}

// key orders and identifies rows.
func (r *row) key() string { return r.Namespace + "/" + r.RunID }

// job is the newest Job, or nil.
func (r *row) job() *batchv1.Job {
	if len(r.Jobs) == 0 {
		return nil
	}
	return r.Jobs[len(r.Jobs)-1]
}

// buildRows joins the Jobs, their pods and Prefect's runs into rows: one per
// run with Jobs here, and one per agent run with none (extra) whose latest
// Submitted mark was made for extraNamespace (any, when empty).
func buildRows(jobs []batchv1.Job, podsByJob map[string][]*corev1.Pod, runs map[string]prefect.RunOverview, extra []prefect.RunOverview, extraNamespace string) []*row {
	byRun := map[string]*row{}
	for i := range jobs {
		job := &jobs[i]
		id := job.Labels[manifest.LabelFlowRunID]
		if id == "" {
			continue
		}
		k := job.Namespace + "/" + id
		r := byRun[k]
		if r == nil {
			r = &row{Namespace: job.Namespace, RunID: id, Name: job.Annotations[manifest.AnnotationFlowRunName], Flow: job.Annotations[manifest.AnnotationFlowName]}
			byRun[k] = r
		}
		r.Jobs = append(r.Jobs, job)
	}
	withJobs := map[string]bool{}
	for _, r := range byRun {
		withJobs[r.RunID] = true
		sort.SliceStable(r.Jobs, func(i, j int) bool { return r.Jobs[i].CreationTimestamp.Before(&r.Jobs[j].CreationTimestamp) })
		if run, ok := runs[r.RunID]; ok {
			r.fromPrefect(run)
		}
		if job := r.job(); job != nil {
			r.Pod = newestPod(podsByJob[job.Namespace+"/"+job.Name])
		}
	}
	out := make([]*row, 0, len(byRun)+len(extra))
	for _, r := range byRun {
		r.Drift = drift(r, podsByJob)
		out = append(out, r)
	}
	for _, run := range extra {
		if withJobs[run.ID] {
			continue
		}
		// The run's latest Submitted mark says for which namespace's agent:
		// agents of one name share a registration across namespaces. A mark
		// that names none (the 1.4.1 agent's) is no agent's here.
		ns := run.By.Namespace
		if ns == "" || (extraNamespace != "" && ns != extraNamespace) {
			continue
		}
		r := &row{Namespace: ns, RunID: run.ID}
		r.fromPrefect(run)
		r.Drift = drift(r, podsByJob)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].RunID < out[j].RunID
	})
	return out
}

func (r *row) fromPrefect(run prefect.RunOverview) {
	r.known = true
	r.State, r.StateTimestamp = run.State, run.StateTimestamp
	if run.Name != "" {
		r.Name = run.Name
	}
	if run.Flow != "" {
		r.Flow = run.Flow
	}
}

// drift names the disagreements between the run's state and its Jobs.
func drift(r *row, podsByJob map[string][]*corev1.Pod) []string {
	if !r.known {
		return nil
	}
	live, failedJob := false, false
	for _, job := range r.Jobs {
		for _, p := range podsByJob[job.Namespace+"/"+job.Name] {
			if p.DeletionTimestamp == nil && (p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending) {
				live = true
			}
		}
		if jobFailed(job) && job == r.job() {
			failedJob = true
		}
	}
	var out []string
	switch {
	case r.State == "Running" && failedJob:
		out = append(out, DriftJobFailed)
	case r.State == "Running" && !live:
		out = append(out, DriftRunningWithoutPod)
	case r.State == "Submitted" && len(r.Jobs) == 0:
		out = append(out, DriftSubmittedWithoutJob)
	case prefect.Finished(r.State) && live:
		out = append(out, DriftFinishedPodRunning)
	}
	return out
}

func jobFailed(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func newestPod(pods []*corev1.Pod) *corev1.Pod {
	var newest *corev1.Pod
	for _, p := range pods {
		if newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp) ||
			(newest.CreationTimestamp.Equal(&p.CreationTimestamp) && p.Name > newest.Name) {
			newest = p
		}
	}
	return newest
}

// podStatus is the POD column: the phase, or why the pod waits or failed.
func podStatus(p *corev1.Pod) string {
	if p == nil {
		return "<none>"
	}
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	switch p.Status.Phase {
	case corev1.PodPending:
		for _, cs := range statuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" && w.Reason != "ContainerCreating" {
				return w.Reason
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason != "" {
				return c.Reason
			}
		}
	case corev1.PodFailed:
		if p.Status.Reason != "" {
			return fmt.Sprintf("Failed (%s)", p.Status.Reason)
		}
		for _, cs := range statuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				return fmt.Sprintf("Failed (exit %d)", t.ExitCode)
			}
		}
	}
	return string(p.Status.Phase)
}

func joinOrNone(s []string) string {
	if len(s) == 0 {
		return "<none>"
	}
	return strings.Join(s, ",")
}
