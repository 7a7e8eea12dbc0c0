package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// The submission protocol: how the agent claims a run on a Prefect Server
// that has no compare-and-set (prefect.Decide holds the rule itself).
//
//  1. Right before marking, the run is read again with its state history:
//     a run no longer in the Scheduled state and version the poll saw is
//     left alone. The history names the Scheduled state's row.
//  2. The Submitted mark carries, in its context, the agent's identity, a
//     fresh token and the Scheduled state it claims (row id and version).
//  3. ClaimSettle after the mark (or after any error), the history is read
//     again and the rule applied: only the mark that wins the claimed state
//     acts. A loser creates nothing and, if the run's current state is its
//     own mark, puts back the state its mark replaced, with a line on the run.
//  4. ClaimRecheck after the Job is created the rule is applied once more, for
//     writes that were in flight at step 3; a Job whose claim no longer wins
//     is deleted.
//
// Failing a run that cannot be built goes through the same claim first; the
// relaunch of a Running run for its due task runs claims the task runs the
// same way (task runs have no lock at all on Server) and the relaunch whose
// claim wins the first due task run creates the Job.

// Defaults of the protocol's delays.
const (
	DefaultClaimSettle       = time.Second
	DefaultClaimRecheck      = 5 * time.Second
	DefaultHeartbeatInterval = jobs.DefaultHeartbeatInterval
)

// errNotAsPolled says the run changed between the poll and the claim.
var errNotAsPolled = errors.New("the flow run changed since the poll")

// reread reads the run's history right before a claim and checks the run is
// still as the poll saw it: the same Scheduled state and version, or (for a
// relaunch) Running with the due task runs in the same state and version.
func (a *Agent) reread(ctx context.Context, run prefect.FlowRun, due []prefect.SubmittableRunTask_runsTask_run) (prefect.RunHistory, error) {
	ids := make([]string, 0, len(due))
	for _, tr := range due {
		ids = append(ids, tr.Id)
	}
	h, err := a.cfg.Prefect.ReadHistory(ctx, run.Id, ids)
	if err != nil {
		return h, err
	}
	if h.Version != run.Version || h.State != run.State {
		return h, fmt.Errorf("%w: %s at version %d, now %s at version %d", errNotAsPolled, run.State, run.Version, h.State, h.Version)
	}
	for _, tr := range due {
		th, ok := h.TaskRuns[tr.Id]
		if !ok || th.Version != tr.Version || !prefect.ScheduledFamily(th.State) {
			return h, fmt.Errorf("%w: task run %s is no longer due", errNotAsPolled, tr.Id)
		}
	}
	return h, nil
}

// claimRun marks a Scheduled run Submitted as a claim of its current state
// and applies the rule. It returns whether this agent won, and the run's
// version after the mark. by.Token identifies the mark.
func (a *Agent) claimRun(ctx context.Context, hurry hurrySignal, log klog.Logger, h prefect.RunHistory, by *prefect.Submission, message string) (int, bool) {
	current, ok := h.Current()
	if !ok {
		log.Error(nil, "The flow run's state history does not hold its current state; leaving the run for a later poll", "state", h.State, "version", h.Version)
		return 0, false
	}
	by.Claims = &prefect.Claim{StateID: current.ID, Version: current.Version}
	version := h.Version
	err := a.cfg.Prefect.SetFlowRunState(prefect.Once(ctx), h.ID, &version, prefect.SubmittedState(message, h.Serialized, *by))
	if errors.Is(err, prefect.ErrAlreadySubmitted) {
		// Nothing was written: Server's 30 s lock after an earlier mark (this
		// agent's or another's), or Cloud's refusal. A run still Scheduled
		// comes back at a later poll once the lock expires.
		log.V(1).Info("The Submitted mark was refused; the run is left as it is for a later poll", "reason", err.Error())
		a.refused.Store(h.ID, a.cfg.Now())
		return 0, false
	}
	h, i, readErr := a.settleAndRead(ctx, hurry, h.ID, by.Token)
	switch {
	case readErr != nil:
		log.Error(readErr, "Could not read the flow run's state history after its Submitted mark; if the mark won, the agent's recovery creates the Job", "markError", errString(err))
		select {
		case a.recoverSoon <- struct{}{}:
		default:
		}
		return 0, false
	case i < 0 && err != nil:
		log.Error(err, "Could not mark the flow run Submitted; it stays as it is for a later poll")
		return 0, false
	case i < 0:
		log.Error(nil, "The flow run's state history does not show the Submitted mark Prefect accepted; creating no Job")
		return 0, false
	}
	d := prefect.Decide(h.Rows, *by.Claims)
	if d.Won(by.Token) {
		if err != nil {
			log.Info("The Submitted mark was applied although its answer was lost; it won the run", "markError", err.Error())
		}
		return h.Rows[i].Version, true
	}
	a.lose(ctx, log, h, i, d)
	return 0, false
}

// settleAndRead waits ClaimSettle, for writes in flight to land, then reads
// the run's history (retrying for up to readBackFor, or until hurry is
// closed: only the history tells whether the mark was applied) and finds the
// mark with token in it.
func (a *Agent) settleAndRead(ctx context.Context, hurry hurrySignal, id, token string) (prefect.RunHistory, int, error) {
	if err := a.settle(ctx); err != nil {
		return prefect.RunHistory{}, -1, err
	}
	deadline := time.Now().Add(readBackFor)
	delay := 250 * time.Millisecond
	for {
		h, err := a.cfg.Prefect.ReadHistory(ctx, id, nil)
		if err == nil {
			return h, prefect.Mark(h.Rows, token), nil
		}
		if time.Now().After(deadline) || hurry.hurried() || errors.Is(err, prefect.ErrNoRun) {
			return h, -1, err
		}
		select {
		case <-ctx.Done():
			return h, -1, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// lose handles a mark that did not win: the run's current state, if it is
// still the mark, goes back to the state the mark replaced.
func (a *Agent) lose(ctx context.Context, log klog.Logger, h prefect.RunHistory, i int, d prefect.Decision) {
	mine := h.Rows[i]
	why := "the Scheduled state it claimed is no longer in the run's history"
	switch d.Outcome {
	case prefect.Claimed:
		why = fmt.Sprintf("another submission (%s) claimed the same Scheduled state first", d.WinnerBy.Describe())
	case prefect.Interrupted:
		why = fmt.Sprintf("the run became %s before the mark", d.First.State)
	}
	log.V(1).Info("The Submitted mark lost its claim; creating no Job", "why", why)
	cur, ok := h.Current()
	if !ok || cur.ID != mine.ID {
		return // the run moved on since the mark: nothing to undo
	}
	back, ok := prefect.Replaced(h.Rows, i)
	if !ok {
		return
	}
	ctx, cancel := freshContext(ctx)
	defer cancel()
	version := h.Version
	if err := a.cfg.Prefect.SetFlowRunState(ctx, h.ID, &version, back.Serialized); err != nil {
		log.V(1).Info("Could not put back the state the losing mark replaced", "state", back.State, "err", err.Error())
		return
	}
	log.Info("Put back the flow run's state: this agent's Submitted mark came too late", "state", back.State, "why", why)
	a.runs.BestEffort(ctx, h.ID, prefect.LevelWarning, fmt.Sprintf("This agent's Submitted mark came too late (%s): it created no Job and put back the run's %s state", why, back.State))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// claimTaskRuns marks the due task runs of a Running run Submitted, each as
// a claim of its current state, and applies the rule to the first of them
// (by id): the relaunch whose claim wins it creates the Job. A loser puts
// back the task runs still showing its own marks.
func (a *Agent) claimTaskRuns(ctx context.Context, log klog.Logger, h prefect.RunHistory, due []prefect.SubmittableRunTask_runsTask_run, by *prefect.Submission) bool {
	if len(due) == 0 {
		return false
	}
	ids := make([]string, 0, len(due))
	for _, tr := range due {
		ids = append(ids, tr.Id)
	}
	sort.Strings(ids)
	claims := map[string]prefect.Claim{}
	for _, id := range ids {
		th := h.TaskRuns[id]
		cur, ok := th.Current()
		if !ok {
			log.Error(nil, "A task run's state history does not hold its current state; leaving the relaunch for a later poll", "taskRun", id)
			return false
		}
		mark := *by
		mark.Claims = &prefect.Claim{StateID: cur.ID, Version: cur.Version}
		claims[id] = *mark.Claims
		v := th.Version
		if err := a.cfg.Prefect.SetTaskRunState(ctx, id, &v, prefect.SubmittedState("Submitted for execution.", th.Serialized, mark)); err != nil {
			// It may have been applied: the history tells.
			log.V(1).Info("Marking a task run Submitted failed", "taskRun", id, "err", err.Error())
		}
	}
	// Submitted task runs do not keep Lazarus away: keep the run alive
	// while its relaunch starts (the Job controller goes on while the pod starts).
	a.heartbeat(ctx, log, h.ID)
	if a.settle(ctx) != nil {
		return false
	}
	after, err := a.cfg.Prefect.ReadHistory(ctx, h.ID, ids)
	if err != nil {
		log.Error(err, "Could not read the task runs' histories after marking them; a later poll or Lazarus takes the relaunch up")
		return false
	}
	key := ids[0]
	th := after.TaskRuns[key]
	d := prefect.Decide(th.Rows, claims[key])
	if d.Won(by.Token) {
		return true
	}
	log.V(1).Info("Another agent's relaunch claimed the due task runs first; creating no Job", "taskRun", key)
	for _, id := range ids {
		th := after.TaskRuns[id]
		i := prefect.Mark(th.Rows, by.Token)
		cur, ok := th.Current()
		if i < 0 || !ok || cur.ID != th.Rows[i].ID {
			continue
		}
		back, ok := prefect.Replaced(th.Rows, i)
		if !ok {
			continue
		}
		v := th.Version
		if err := a.cfg.Prefect.SetTaskRunState(ctx, id, &v, back.Serialized); err != nil {
			log.V(1).Info("Could not put back a task run's state", "taskRun", id, "err", err.Error())
		}
	}
	return false
}

// heartbeat moves the run's heartbeat, so Lazarus leaves alone a run the
// agent holds on purpose. A failure is only logged: the next beat may land.
func (a *Agent) heartbeat(ctx context.Context, log klog.Logger, runID string) {
	if err := a.cfg.Prefect.Heartbeat(ctx, runID); err != nil {
		log.V(1).Info("Could not send the flow run's heartbeat", "flowRun", runID, "err", err.Error())
	}
}

// ownsRun tells whether the run's current state is the mark with token, read
// just before the agent changes a run it submitted (reschedule): a state
// written since (a cancel, another submission) is never overwritten.
func (a *Agent) ownsRun(ctx context.Context, runID, token string) (prefect.RunHistory, bool, error) {
	h, err := a.cfg.Prefect.ReadHistory(ctx, runID, nil)
	if err != nil {
		return h, false, err
	}
	by, ok := prefect.SubmittedBy(h.Serialized)
	return h, h.State == "Submitted" && ok && by.Token == token, nil
}

// recheckLater decides the claim again ClaimRecheck after the Job's
// creation, for a mark with an earlier timestamp that was still in flight
// when the claim was first decided. A Job whose claim no longer wins is
// deleted, unless the winner is in this namespace with the same claim: then
// the deterministic name made it the winner's Job too.
func (a *Agent) recheckLater(ctx context.Context, runID string, job *batchv1.Job, by prefect.Submission) {
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		log := klog.FromContext(ctx).WithValues("flowRun", runID, "job", klog.KObj(job))
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.ClaimRecheck):
		}
		h, err := a.cfg.Prefect.ReadHistory(ctx, runID, nil)
		if err != nil {
			log.V(1).Info("Could not read the flow run's history to check its claim again", "err", err.Error())
			return
		}
		d := prefect.Decide(h.Rows, *by.Claims)
		if d.Won(by.Token) || d.Outcome == prefect.Undecided ||
			(d.Outcome == prefect.Claimed && d.WinnerBy.Namespace == by.Namespace && d.WinnerBy.Token != "") {
			return
		}
		background := metav1.DeletePropagationBackground
		err = a.cfg.Kube.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &background})
		if err != nil && !apierrors.IsNotFound(err) {
			log.Error(err, "A write that landed late took the flow run's claim from this agent, and its Job could not be deleted")
			return
		}
		a.jobMetrics.JobDeleted("superseded")
		why := fmt.Sprintf("the run became %s first", d.First.State)
		if d.Outcome == prefect.Claimed {
			why = fmt.Sprintf("%s claimed it first", d.WinnerBy.Describe())
		}
		log.Info("Deleted the Job: a write that landed late took the flow run's claim from this agent", "why", why)
		a.runs.BestEffort(ctx, runID, prefect.LevelWarning, fmt.Sprintf("Deleted Job %s: a state written before this agent's Submitted mark landed late (%s), so the mark did not win the run", job.Name, why))
	}()
}

// lockedOut tells whether the run's Submitted mark was refused within the
// longest poll interval: Server's lock lasts 30 s, and the run is asked
// about again at the idle rate instead of at every busy poll.
func (a *Agent) lockedOut(id string, now time.Time) bool {
	v, ok := a.refused.Load(id)
	if !ok {
		return false
	}
	if now.Sub(v.(time.Time)) < a.cfg.Intervals[len(a.cfg.Intervals)-1] {
		return true
	}
	a.refused.Delete(id)
	return false
}
