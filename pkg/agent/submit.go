package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// FieldManager is the field manager of the Jobs the agent creates.
const FieldManager = "kubectl-prefect-agent"

// submit deploys one flow run: build its Job, mark it Submitted, create the
// Job, and log the Job's name on the run. ctx carries the work (it outlives a
// stop); stop ends the wait for a run scheduled a few seconds ahead.
func (a *Agent) submit(ctx, stop context.Context, run prefect.FlowRun) {
	log := klog.FromContext(stop).WithValues("flowRun", run.Id)
	if start, ok := prefect.StateStartTime(run.Serialized_state); ok {
		if wait := start.Sub(a.cfg.Now()); wait > 0 {
			select {
			case <-stop.Done():
				return // untouched: the run stays Scheduled for the next agent
			case <-time.After(wait):
			}
		}
	}
	log.Info("Deploying flow run")

	job, warnings, err := manifest.BuildJob(ctx, a.cfg.Job, manifest.FlowRun{
		ID: run.Id, Version: run.Version, FlowID: run.Flow.Id, CoreVersion: run.Flow.Core_version,
		FlowName: run.Flow.Name, Name: run.Name,
		Storage: run.Flow.Storage, RunConfig: run.Run_config,
	})
	if err != nil {
		a.metrics.submitFailures.WithLabelValues("build").Inc()
		a.fail(ctx, run.Id, &run.Version, fmt.Sprintf("Cannot build a Kubernetes Job for this flow run: %v", err))
		return
	}

	if prefect.ScheduledFamily(prefect.StateType(run.Serialized_state)) {
		version := run.Version
		err := a.cfg.Prefect.SetFlowRunState(ctx, run.Id, &version, prefect.SubmittedState("Submitted for execution", run.Serialized_state))
		if errors.Is(err, prefect.ErrAlreadySubmitted) || errors.Is(err, prefect.ErrVersionLocked) {
			log.V(1).Info("Another agent submitted the flow run first", "reason", err.Error())
			return
		}
		if err != nil {
			log.Error(err, "Could not mark the flow run Submitted; it stays Scheduled for a later poll")
			return
		}
		for _, tr := range run.Task_runs {
			if !prefect.ScheduledFamily(prefect.StateType(tr.Serialized_state)) {
				continue
			}
			v := tr.Version
			if err := a.cfg.Prefect.SetTaskRunState(ctx, tr.Id, &v, prefect.SubmittedState("Submitted for execution.", tr.Serialized_state)); err != nil {
				log.Error(err, "Could not mark a task run Submitted", "taskRun", tr.Id)
			}
		}
	}
	submitted := run.Version + 1
	for _, w := range warnings {
		a.runLog(ctx, run.Id, prefect.LevelWarning, w)
	}

	if err := a.createJob(ctx, job); err != nil {
		a.metrics.submitFailures.WithLabelValues("create").Inc()
		a.fail(ctx, run.Id, &submitted, fmt.Sprintf("Kubernetes refused the flow run's Job %s: %v", job.Name, err))
		return
	}
	log.Info("Created Job for flow run", "job", klog.KObj(job))
	a.metrics.runsSubmitted.Inc()
	a.runLog(ctx, run.Id, prefect.LevelInfo, fmt.Sprintf("Submitted for execution: Job %s", job.Name))
}

// createJob creates the Job, retrying what can succeed later. A Job of the
// same name for the same run means an earlier try got through.
func (a *Agent) createJob(ctx context.Context, job *batchv1.Job) error {
	jobs := a.cfg.Kube.BatchV1().Jobs(job.Namespace)
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 8, Cap: 10 * time.Second}
	return retry.OnError(backoff, retryableKubeError, func() error {
		_, err := jobs.Create(ctx, job, metav1.CreateOptions{FieldManager: FieldManager})
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		existing, getErr := jobs.Get(ctx, job.Name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if existing.Labels[manifest.LabelFlowRunID] != job.Labels[manifest.LabelFlowRunID] {
			return fmt.Errorf("a Job named %s already exists for another flow run (%s)", job.Name, existing.Labels[manifest.LabelFlowRunID])
		}
		return nil
	})
}

// retryableKubeError tells errors worth another try from refusals.
func retryableKubeError(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) ||
		utilnet.IsConnectionReset(err) || utilnet.IsConnectionRefused(err) || utilnet.IsProbableEOF(err)
}

// fail reports a run that cannot be deployed: an ERROR line on the run, then
// the run set Failed with the same message.
func (a *Agent) fail(ctx context.Context, runID string, version *int, message string) {
	log := klog.FromContext(ctx).WithValues("flowRun", runID)
	log.Info("Flow run cannot be deployed", "reason", message)
	a.runLog(ctx, runID, prefect.LevelError, message)
	if err := a.cfg.Prefect.SetFlowRunState(ctx, runID, version, prefect.FailedState(message)); err != nil {
		log.Error(err, "Could not set the flow run Failed")
	}
}

// runLog writes one line to the run's logs under the agent's name.
func (a *Agent) runLog(ctx context.Context, runID, level, message string) {
	if err := a.cfg.Prefect.WriteRunLogs(ctx, prefect.RunLog{FlowRunID: runID, Name: a.cfg.Name, Level: level, Message: message, Time: a.cfg.Now()}); err != nil {
		klog.FromContext(ctx).Error(err, "Could not write to the flow run's logs", "flowRun", runID)
	}
}
