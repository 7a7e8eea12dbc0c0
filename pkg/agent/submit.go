package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// submit deploys one flow run: build its Job, claim the run (claim.go),
// create the Job if the claim won, and log the Job's name on the run. ctx
// is the work's (workCtx: it outlives a stop, stop.go); pollCtx ends the
// wait for a run scheduled a few seconds ahead; once hurry is closed the
// claim's read-back and the Job's creation stop retrying.
//
// A Scheduled run is claimed with a Submitted mark; a Running run comes back
// when task runs of it are due for a retry, and is relaunched with a Job of
// its own after its due task runs are claimed the same way, as the 1.4.1
// agent marks them.
func (a *Agent) submit(ctx, pollCtx context.Context, hurry hurrySignal, run prefect.FlowRun) {
	log := klog.FromContext(pollCtx).WithValues("flowRun", run.Id)
	if start, ok := prefect.StateStartTime(run.Serialized_state); ok {
		if wait := start.Sub(a.cfg.Now()); wait > 0 {
			a.waiting.Store(run.Id, start)
			select {
			case <-pollCtx.Done():
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

	job, warnings, buildErr := a.buildJob(ctx, run, run.Version, relaunch)
	if buildErr != nil && a.deferOnTransientTemplate(ctx, run, buildErr) {
		return
	}
	a.templateRead(run.Id)
	if buildErr != nil {
		a.metrics.submitFailures.WithLabelValues("build").Inc()
	}
	// The poll's copy may be seconds old (the start time, a slot, the
	// build): read the run again right before claiming it.
	claimed := due
	if scheduled {
		claimed = nil
	}
	h, err := a.reread(ctx, run, claimed)
	if errors.Is(err, errNotAsPolled) {
		log.V(1).Info("The flow run changed since the poll; leaving it", "change", err.Error())
		return
	}
	if err != nil {
		log.Error(err, "Could not read the flow run again before claiming it; it stays for a later poll")
		return
	}
	by := prefect.Submission{AgentID: a.agentID, Agent: a.cfg.Name, Namespace: a.cfg.Job.Namespace, Token: newToken()}
	version := run.Version
	if scheduled {
		message := "Submitted for execution"
		if buildErr != nil {
			message = "Claimed by the agent to report that its Job cannot be built"
		}
		v, won := a.claimRun(ctx, hurry, log, h, &by, message)
		if !won {
			return
		}
		version = v
		a.markTaskRuns(ctx, log, due, by)
	} else if !a.claimTaskRuns(ctx, log, h, due, &by) {
		return
	}
	if buildErr != nil {
		message := fmt.Sprintf("Cannot build a Kubernetes Job for this flow run: %v", buildErr)
		if scheduled {
			a.fail(ctx, run.Id, by.Token, message)
		} else {
			a.failRelaunch(ctx, run.Id, message)
		}
		return
	}
	for _, w := range warnings {
		a.runs.BestEffort(ctx, run.Id, prefect.LevelWarning, w)
	}
	reason := launchSubmission
	if !scheduled {
		reason = launchRelaunch
	}
	a.launch(ctx, hurry, reason, run, job, version, by)
}

// readBackFor bounds the read back after an unanswered Submitted mark.
const readBackFor = time.Minute

// markTaskRuns marks the due task runs of a Scheduled run this agent won
// Submitted, as 1.4.1 does: the flow run's claim already decided.
func (a *Agent) markTaskRuns(ctx context.Context, log klog.Logger, due []prefect.SubmittableRunTask_runsTask_run, by prefect.Submission) {
	for _, tr := range due {
		v := tr.Version
		if err := a.cfg.Prefect.SetTaskRunState(ctx, tr.Id, &v, prefect.SubmittedState("Submitted for execution.", tr.Serialized_state, by)); err != nil {
			log.V(1).Info("Could not mark a task run Submitted", "taskRun", tr.Id, "err", err.Error())
		}
	}
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

// fail reports a run that cannot be deployed: an ERROR line on the run, then
// the run set Failed with the same message, provided the run's state is
// still this agent's winning mark (token): a state written since (a cancel,
// another submission) is left alone. It runs on a fresh context: the work's
// context may be ending.
func (a *Agent) fail(ctx context.Context, runID, token, message string) {
	a.failWhen(ctx, runID, message, markedBy(token))
}

// markedBy tells whether a run's current state is the mark with token.
func markedBy(token string) func(prefect.RunHistory) bool {
	return func(h prefect.RunHistory) bool {
		by, ok := prefect.SubmittedBy(h.Serialized)
		return h.State == "Submitted" && ok && by.Token == token
	}
}

// finish writes a line then a final state on a run whose current state is
// still this agent's winning mark (token).
func (a *Agent) finish(ctx context.Context, runID, token, level, message string, state json.RawMessage) {
	ctx, cancel := freshContext(ctx)
	defer cancel()
	log := klog.FromContext(ctx).WithValues("flowRun", runID)
	h, err := a.cfg.Prefect.ReadHistory(ctx, runID, nil)
	if err != nil || !markedBy(token)(h) {
		log.Info("Not setting the flow run's state: it is no longer this agent's mark", "state", prefect.StateType(state), "err", errString(err))
		return
	}
	a.runs.BestEffort(ctx, runID, level, message)
	version := h.Version
	if err := a.cfg.Prefect.SetFlowRunState(ctx, runID, &version, state); err != nil {
		log.Error(err, "Could not set the flow run's state", "state", prefect.StateType(state))
	}
}

// failRelaunch fails a Running run whose relaunch this agent's claim on its
// due task runs won, while the run is still Running.
func (a *Agent) failRelaunch(ctx context.Context, runID, message string) {
	a.failWhen(ctx, runID, message, func(h prefect.RunHistory) bool { return h.State == "Running" })
}

// failWhen is fail with the test of the run's state read just before.
func (a *Agent) failWhen(ctx context.Context, runID, message string, mine func(prefect.RunHistory) bool) {
	ctx, cancel := freshContext(ctx)
	defer cancel()
	log := klog.FromContext(ctx).WithValues("flowRun", runID)
	h, err := a.cfg.Prefect.ReadHistory(ctx, runID, nil)
	if err != nil || !mine(h) {
		log.Info("Not failing the flow run: its state is no longer this agent's mark", "reason", message, "err", errString(err))
		return
	}
	log.Info("Flow run cannot be deployed", "reason", message)
	a.runs.BestEffort(ctx, runID, prefect.LevelError, message)
	version := h.Version
	if err := a.cfg.Prefect.SetFlowRunState(ctx, runID, &version, prefect.FailedState(message)); err != nil {
		log.Error(err, "Could not set the flow run Failed")
	}
}

// newToken returns a random submission token.
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
