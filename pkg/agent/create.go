package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// refusedError is a Job Kubernetes answered with a 4xx refusal: trying again
// cannot help, so the run fails.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// createAttemptTimeout bounds one create request.
const createAttemptTimeout = 20 * time.Second

// createJob creates the Job and reports whether this call created it. Only a
// 4xx answer is a refusal; transport errors, 5xx and 429 are retried with
// back-off for CreateRetryFor (the deterministic name makes that safe), or
// until hurry is closed (the stop hurries, stop.go). A Job of the same name made
// for the same submission means an earlier try got through.
func (a *Agent) createJob(ctx context.Context, hurry hurrySignal, job *batchv1.Job) (bool, error) {
	log := klog.FromContext(ctx).WithValues("job", klog.KObj(job))
	client := a.cfg.Kube.BatchV1().Jobs(job.Namespace)
	deadline := time.Now().Add(a.cfg.CreateRetryFor)
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		created, err := a.createOnce(ctx, client, job)
		if err == nil {
			return created, nil
		}
		var refused *refusedError
		if errors.As(err, &refused) || ctx.Err() != nil {
			return false, err
		}
		if time.Now().After(deadline) || hurry.hurried() {
			return false, fmt.Errorf("gave up after %d tries: %w", attempt, err)
		}
		log.V(1).Info("Creating the Job failed; trying again", "attempt", attempt, "err", err.Error())
		select {
		case <-ctx.Done():
			return false, err
		case <-hurry:
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

type jobClient interface {
	Create(context.Context, *batchv1.Job, metav1.CreateOptions) (*batchv1.Job, error)
	Get(context.Context, string, metav1.GetOptions) (*batchv1.Job, error)
}

// createOnce makes one try; refusals come back as *refusedError.
func (a *Agent) createOnce(ctx context.Context, client jobClient, job *batchv1.Job) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, createAttemptTimeout)
	defer cancel()
	made, err := client.Create(ctx, job, metav1.CreateOptions{FieldManager: jobs.FieldManager})
	if err == nil {
		job.UID = made.UID // Events on the Job need it
		return true, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		if refusal(err) {
			return false, &refusedError{err}
		}
		return false, err
	}
	existing, err := client.Get(ctx, job.Name, metav1.GetOptions{})
	if err != nil {
		return false, err // gone again, or unreachable: try again
	}
	if sub, ok := manifest.SubmissionOf(job); !ok || !sub.Is(existing) {
		return false, &refusedError{fmt.Errorf("a Job named %s already exists for another submission (flow run %s, version %s)",
			job.Name, existing.Labels[manifest.LabelFlowRunID], existing.Annotations[manifest.AnnotationFlowRunVersion])}
	}
	job.UID = existing.UID
	return false, nil
}

// refusal tells a 4xx answer (other than timeouts and rate limits) from
// errors worth another try.
func refusal(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	code := int(status.Status().Code)
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// retireOlderJobs deletes the run's Jobs made for an older version that have
// not finished: when Lazarus or a user reschedules a run whose Job is still
// pending, only the new Job may run. Each deletion gets a line in the run log.
func (a *Agent) retireOlderJobs(ctx context.Context, runID string, job *batchv1.Job) {
	log := klog.FromContext(ctx).WithValues("flowRun", runID)
	sub, ok := manifest.SubmissionOf(job)
	if !ok {
		return
	}
	client := a.cfg.Kube.BatchV1().Jobs(job.Namespace)
	runJobs, err := a.runJobs(ctx, job.Namespace, runID)
	if err != nil {
		log.Error(err, "Could not list the flow run's Jobs to retire older ones")
		return
	}
	for _, old := range runJobs {
		was, ok := manifest.SubmissionOf(old)
		if old.Name == job.Name || !ok || !sub.Supersedes(was) || manifest.JobFinished(old) || old.DeletionTimestamp != nil {
			continue
		}
		v := was.Version
		background := metav1.DeletePropagationBackground
		err = client.Delete(ctx, old.Name, metav1.DeleteOptions{PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &old.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			log.Error(err, "Could not delete the flow run's older Job", "job", klog.KObj(old))
			continue
		}
		a.jobMetrics.JobDeleted("superseded")
		log.Info("Deleted the flow run's older unfinished Job", "job", klog.KObj(old), "version", v)
		msg := fmt.Sprintf("Deleted Job %s of an earlier submission (version %d), which had not finished: the run was submitted again and only Job %s may run it", old.Name, v, job.Name)
		a.events.On(old, corev1.EventTypeNormal, jobs.EventSuperseded, msg)
		a.runs.BestEffort(ctx, runID, prefect.LevelInfo, msg)
	}
}

// runJobs returns the run's Jobs in namespace: from the Job controller's
// index once it has synced, so a submission costs no extra request, else
// (before the first sync) from the API.
func (a *Agent) runJobs(ctx context.Context, namespace, runID string) ([]*batchv1.Job, error) {
	if found, ok := a.jobs.RunJobs(namespace, runID); ok {
		return found, nil
	}
	list, err := a.cfg.Kube.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + runID})
	if err != nil {
		return nil, err
	}
	out := make([]*batchv1.Job, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}
