package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// FieldManager is the field manager of the Jobs the agent creates.
const FieldManager = "kubectl-prefect-agent"

// submit deploys one flow run: build its Job, mark it Submitted, create the
// Job, and log the Job's name on the run. ctx carries the work (it outlives a
// stop); stop ends the wait for a run scheduled a few seconds ahead.
//
// A Scheduled run is marked Submitted first; a Running run comes back when
// task runs of it are due for a retry, and is relaunched with a Job of its own
// after those task runs are marked Submitted, as the 1.4.1 agent does.
func (a *Agent) submit(ctx, stop context.Context, run prefect.FlowRun) {
	log := klog.FromContext(stop).WithValues("flowRun", run.Id)
	if start, ok := prefect.StateStartTime(run.Serialized_state); ok {
		if wait := start.Sub(a.cfg.Now()); wait > 0 {
			a.waiting.Store(run.Id, start)
			select {
			case <-stop.Done():
				a.waiting.Delete(run.Id)
				return // untouched: the run stays Scheduled for the next agent
			case <-time.After(wait):
			}
			a.waiting.Delete(run.Id)
		}
	}
	scheduled := prefect.ScheduledFamily(prefect.StateType(run.Serialized_state))
	due := dueTaskRuns(run)
	relaunch := ""
	if !scheduled {
		if len(due) == 0 {
			return // its due task runs were taken by another agent
		}
		relaunch = relaunchKey(due)
	}
	log.Info("Deploying flow run")

	job, warnings, err := a.buildJob(ctx, run, run.Version, relaunch)
	if err != nil && a.deferOnTransientTemplate(ctx, run, err) {
		return
	}
	a.templateRead(run.Id)
	if err != nil {
		a.metrics.submitFailures.WithLabelValues("build").Inc()
		a.fail(ctx, run.Id, &run.Version, fmt.Sprintf("Cannot build a Kubernetes Job for this flow run: %v", err))
		return
	}
	by := prefect.Submission{AgentID: a.agentID, Agent: a.cfg.Name, Namespace: a.cfg.Job.Namespace, Token: newToken()}
	version := run.Version
	if scheduled {
		v, ours := a.markSubmitted(ctx, log, run, by)
		if !ours {
			return
		}
		version = v
	}
	if marked := a.markTaskRuns(ctx, log, due, by); !scheduled && marked == 0 {
		log.V(1).Info("Another agent relaunched the flow run for its task runs first")
		return
	}
	for _, w := range warnings {
		a.runLog(ctx, run.Id, prefect.LevelWarning, w)
	}
	a.launch(ctx, run, job, version, scheduled, "")
}

// markSubmitted marks a Scheduled run Submitted and says whether the mark is
// this agent's, with the run's version after it. The mark is sent once: after
// any error or refusal the run is read back, because an answer lost after the
// server applied the change looks the same as a change never made.
func (a *Agent) markSubmitted(ctx context.Context, log klog.Logger, run prefect.FlowRun, by prefect.Submission) (int, bool) {
	version := run.Version
	state := prefect.SubmittedState("Submitted for execution", run.Serialized_state, by)
	err := a.cfg.Prefect.SetFlowRunState(prefect.Once(ctx), run.Id, &version, state)
	if err == nil {
		return version + 1, true
	}
	got, readErr := a.readBack(ctx, run.Id)
	switch {
	case readErr != nil:
		log.Error(readErr, "Could not tell whether the Submitted mark was applied; if it was, the agent's recovery creates the Job", "markError", err.Error())
		select {
		case a.recoverSoon <- struct{}{}:
		default:
		}
		return 0, false
	case got.State == "Submitted" && got.By.Token == by.Token:
		log.Info("The Submitted mark was applied although its answer was lost; creating the Job", "markError", err.Error())
		return got.Version, true
	case prefect.ScheduledFamily(got.State) && got.Version == run.Version:
		log.Error(err, "Could not mark the flow run Submitted; it stays Scheduled for a later poll")
		return 0, false
	}
	log.V(1).Info("Another agent submitted the flow run first", "reason", err.Error(), "state", got.State, "submittedBy", got.By.Agent)
	return 0, false
}

// readBack reads a run's state, retrying for up to readBackFor: only the
// answer tells whether a Submitted mark was applied.
func (a *Agent) readBack(ctx context.Context, id string) (prefect.RunSubmission, error) {
	deadline := time.Now().Add(readBackFor)
	delay := 250 * time.Millisecond
	for {
		got, err := a.cfg.Prefect.ReadSubmission(ctx, id)
		if err == nil || time.Now().After(deadline) || a.hurried() {
			return got, err
		}
		select {
		case <-ctx.Done():
			return got, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// readBackFor bounds the read back after an unanswered Submitted mark.
const readBackFor = time.Minute

// markTaskRuns marks the due task runs Submitted and returns how many it did.
// 1.4.1 marks them whatever the flow run's state: a Running run is back in
// the queue because of them.
func (a *Agent) markTaskRuns(ctx context.Context, log klog.Logger, due []prefect.SubmittableRunTask_runsTask_run, by prefect.Submission) int {
	marked := 0
	for _, tr := range due {
		v := tr.Version
		err := a.cfg.Prefect.SetTaskRunState(ctx, tr.Id, &v, prefect.SubmittedState("Submitted for execution.", tr.Serialized_state, by))
		switch {
		case err == nil:
			marked++
		case errors.Is(err, prefect.ErrVersionLocked):
			log.V(1).Info("Another agent marked a task run Submitted first", "taskRun", tr.Id)
		default:
			// The mark may have been applied; count it so the relaunch goes on.
			marked++
			log.Error(err, "Could not mark a task run Submitted", "taskRun", tr.Id)
		}
	}
	return marked
}

// dueTaskRuns are the run's task runs the queue returned it for: those in a
// Scheduled-family state.
func dueTaskRuns(run prefect.FlowRun) []prefect.SubmittableRunTask_runsTask_run {
	var due []prefect.SubmittableRunTask_runsTask_run
	for _, tr := range run.Task_runs {
		if prefect.ScheduledFamily(prefect.StateType(tr.Serialized_state)) {
			due = append(due, tr)
		}
	}
	return due
}

// relaunchKey names one relaunch of a Running run by its due task runs and
// their versions, so each relaunch gets a deterministic Job name of its own.
func relaunchKey(due []prefect.SubmittableRunTask_runsTask_run) string {
	parts := make([]string, 0, len(due))
	for _, tr := range due {
		parts = append(parts, fmt.Sprintf("%s:%d", tr.Id, tr.Version))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// buildJob builds the run's Job for the version it had before its Submitted mark.
func (a *Agent) buildJob(ctx context.Context, run prefect.FlowRun, version int, relaunch string) (*batchv1.Job, []string, error) {
	return manifest.BuildJob(ctx, a.cfg.Job, manifest.FlowRun{
		ID: run.Id, Version: version, FlowID: run.Flow.Id, CoreVersion: run.Flow.Core_version,
		FlowName: run.Flow.Name, Name: run.Name,
		Storage: run.Flow.Storage, RunConfig: run.Run_config, Relaunch: relaunch, Labels: factsOf(run).labels,
	})
}

// launch creates the Job of a run this agent submitted (at version, the
// run's version after the mark), retires the run's older unfinished Jobs and
// logs the Job on the run. A Job Kubernetes refuses fails the run; a Job it
// could not be reached for hands a Scheduled run back to the queue.
func (a *Agent) launch(ctx context.Context, run prefect.FlowRun, job *batchv1.Job, version int, scheduled bool, prefix string) {
	log := klog.FromContext(ctx).WithValues("flowRun", run.Id)
	created, err := a.createJob(ctx, job)
	if err != nil {
		a.metrics.submitFailures.WithLabelValues("create").Inc()
		var refused *refusedError
		switch {
		case errors.As(err, &refused):
			a.fail(ctx, run.Id, &version, fmt.Sprintf("Kubernetes refused the flow run's Job %s: %v", job.Name, err))
		case scheduled:
			a.reschedule(ctx, run, version, fmt.Sprintf("Could not reach Kubernetes to create the flow run's Job %s (%v); the run goes back to Scheduled for another try", job.Name, err))
		default:
			log.Error(err, "Could not create the Job relaunching the flow run for its task runs; Lazarus or a later poll takes it up", "job", klog.KObj(job))
		}
		return
	}
	if scheduled {
		// A new submission of the run replaces its Jobs for older versions;
		// a relaunch for task runs leaves the run's earlier Job alone.
		a.retireOlderJobs(ctx, run.Id, job)
	}
	if created {
		log.Info("Created Job for flow run", "job", klog.KObj(job))
		reason, why := EventCreated, "Created"
		if prefix != "" {
			reason, why = EventRecovered, "Recovered: created"
		}
		a.events.on(job, corev1.EventTypeNormal, reason, fmt.Sprintf("%s for flow run %s (%s), version %d", why, run.Name, run.Id, version))
	} else {
		log.Info("The flow run's Job already existed from an earlier try", "job", klog.KObj(job))
	}
	a.metrics.runsSubmitted.Inc()
	a.runLog(ctx, run.Id, prefect.LevelInfo, prefix+"Submitted for execution: Job "+job.Name)
}

// reschedule hands a Submitted run back to the queue with its start time.
func (a *Agent) reschedule(ctx context.Context, run prefect.FlowRun, version int, message string) {
	ctx, cancel := freshContext(ctx)
	defer cancel()
	log := klog.FromContext(ctx).WithValues("flowRun", run.Id)
	log.Info("Handing the flow run back to the queue", "reason", message)
	start, ok := prefect.StateStartTime(run.Serialized_state)
	if !ok {
		start, ok = prefect.StateStartTime(prefect.PreviousState(run.Serialized_state))
	}
	if !ok {
		start = a.cfg.Now()
	}
	a.runLog(ctx, run.Id, prefect.LevelWarning, message)
	if err := a.cfg.Prefect.SetFlowRunState(ctx, run.Id, &version, prefect.ScheduledState("Rescheduled by the agent: Kubernetes was unreachable", start)); err != nil {
		log.Error(err, "Could not hand the flow run back to Scheduled; Lazarus will")
	}
}

// fail reports a run that cannot be deployed: an ERROR line on the run, then
// the run set Failed with the same message. It runs on a fresh context: the
// work's context may be ending.
func (a *Agent) fail(ctx context.Context, runID string, version *int, message string) {
	ctx, cancel := freshContext(ctx)
	defer cancel()
	log := klog.FromContext(ctx).WithValues("flowRun", runID)
	log.Info("Flow run cannot be deployed", "reason", message)
	a.runLog(ctx, runID, prefect.LevelError, message)
	if err := a.cfg.Prefect.SetFlowRunState(ctx, runID, version, prefect.FailedState(message)); err != nil {
		log.Error(err, "Could not set the flow run Failed")
	}
}

// freshContext keeps ctx's values but not its end, for the reports that must
// go out even while the agent stops.
func freshContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
}

// reportTimeout bounds a report written on a fresh context.
const reportTimeout = 20 * time.Second

// runLog writes one line to the run's logs under the agent's name.
func (a *Agent) runLog(ctx context.Context, runID, level, message string) {
	if err := a.cfg.Prefect.WriteRunLogs(ctx, prefect.RunLog{FlowRunID: runID, Name: a.cfg.Name, Level: level, Message: message, Time: a.cfg.Now()}); err != nil {
		klog.FromContext(ctx).Error(err, "Could not write to the flow run's logs", "flowRun", runID)
	}
}

// newToken returns a random submission token.
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
