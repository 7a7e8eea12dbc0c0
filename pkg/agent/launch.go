package agent

import (
	"context"
	"errors"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// launchReason is why a claimed run's Job is launched.
type launchReason int

const (
	// launchSubmission: a Scheduled run this agent's Submitted mark won.
	launchSubmission launchReason = iota
	// launchRelaunch: a Running run whose due task runs this agent's marks
	// won; its earlier Job is left alone.
	launchRelaunch
	// launchRecovery: a run this agent left Submitted without its Job
	// (recover.go).
	launchRecovery
)

// scheduled tells whether the launch is the run's submission from Scheduled
// (a relaunch is not): its Job replaces the run's older Jobs, and a Job that
// cannot be created hands the run back to the queue.
func (r launchReason) scheduled() bool { return r != launchRelaunch }

// launch creates the Job of a run this agent's claim by won (at version,
// the run's version after the mark), retires the run's older unfinished Jobs,
// logs the Job on the run and has the claim checked again ClaimRecheck later.
// A Job Kubernetes refuses fails the run; a Job it could not be reached for
// hands a Scheduled run back to the queue, unless the Job may exist. Once
// hurry is closed the creation stops retrying.
func (a *Agent) launch(ctx context.Context, hurry hurrySignal, reason launchReason, run prefect.FlowRun, job *batchv1.Job, version int, by prefect.Submission) {
	log := klog.FromContext(ctx).WithValues("flowRun", run.Id)
	created, err := a.createJob(ctx, hurry, job)
	if err != nil {
		a.metrics.submitFailures.WithLabelValues("create").Inc()
		var refused *refusedError
		switch {
		case errors.As(err, &refused):
			a.fail(ctx, run.Id, by.Token, fmt.Sprintf("Kubernetes refused the flow run's Job %s: %v", job.Name, err))
		case reason.scheduled():
			a.reschedule(ctx, run, job, version, by.Token, fmt.Sprintf("Could not reach Kubernetes to create the flow run's Job %s (%v); the run goes back to Scheduled for another try", job.Name, err))
		default:
			log.Error(err, "Could not create the Job relaunching the flow run for its task runs; Lazarus or a later poll takes it up", "job", klog.KObj(job))
		}
		return
	}
	if reason.scheduled() {
		// A new submission of the run replaces its Jobs for older versions;
		// a relaunch for task runs leaves the run's earlier Job alone.
		a.retireOlderJobs(ctx, run.Id, job)
		if by.Claims != nil {
			a.recheckLater(ctx, run.Id, job, by)
		}
	}
	if created {
		log.Info("Created Job for flow run", "job", klog.KObj(job))
		a.events.On(job, corev1.EventTypeNormal, reason.eventReason(), fmt.Sprintf("%s for flow run %s (%s), version %d", reason.eventVerb(), run.Name, run.Id, version))
	} else {
		log.Info("The flow run's Job already existed from an earlier try", "job", klog.KObj(job))
	}
	a.metrics.runsSubmitted.Inc()
	a.runs.BestEffort(ctx, run.Id, prefect.LevelInfo, reason.jobLine(job.Name))
}

// eventReason and eventVerb make the Event on a Job the launch created.
func (r launchReason) eventReason() string {
	if r == launchRecovery {
		return jobs.EventRecovered
	}
	return jobs.EventCreated
}

func (r launchReason) eventVerb() string {
	if r == launchRecovery {
		return "Recovered: created"
	}
	return "Created"
}

// jobLine is the run log line naming the run's Job. Recovery looks for its
// "Submitted for execution: Job <name>" (recover.go); a recovered run's line
// first says why its Job came late.
func (r launchReason) jobLine(job string) string {
	line := "Submitted for execution: Job " + job
	if r == launchRecovery {
		line = "Recovered after the agent stopped between marking the run Submitted and creating its Job. " + line
	}
	return line
}

// reschedule hands a run this agent submitted back to the queue with its
// start time, after its Job could not be created. It does nothing when the
// Job may exist after all (an answer lost on the way back: recovery finds it)
// or when the run's state is no longer this agent's mark.
func (a *Agent) reschedule(ctx context.Context, run prefect.FlowRun, job *batchv1.Job, version int, token, message string) {
	ctx, cancel := freshContext(ctx)
	defer cancel()
	log := klog.FromContext(ctx).WithValues("flowRun", run.Id)
	if _, err := a.cfg.Kube.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		log.Error(err, "The flow run's Job may exist although its creation failed; leaving the run Submitted (recovery creates the Job if it is missing)", "job", klog.KObj(job))
		return
	}
	if _, mine, err := a.ownsRun(ctx, run.Id, token); err != nil || !mine {
		log.Info("Not handing the flow run back to the queue: its state is no longer this agent's mark", "err", errString(err))
		return
	}
	log.Info("Handing the flow run back to the queue", "reason", message)
	start, ok := prefect.StateStartTime(run.Serialized_state)
	if !ok {
		start, ok = prefect.StateStartTime(prefect.PreviousState(run.Serialized_state))
	}
	if !ok {
		start = a.cfg.Now()
	}
	a.runs.BestEffort(ctx, run.Id, prefect.LevelWarning, message)
	if err := a.cfg.Prefect.SetFlowRunState(ctx, run.Id, &version, prefect.ScheduledState("Rescheduled by the agent: Kubernetes was unreachable", start)); err != nil {
		log.Error(err, "Could not hand the flow run back to Scheduled; Lazarus will")
	}
}
