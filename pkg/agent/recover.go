package agent

import (
	"context"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Recovery of stranded runs: a run this agent marked Submitted whose Job it
// never created (the process was killed, the node lost, or the answer to the
// mark lost) would wait for Lazarus. At start and then every RecoverInterval
// the agent pages, oldest mark first, through its Submitted runs marked
// between RecoverWindow and RecoverGrace ago that have no "Submitted for
// execution: Job ..." line since then (a filter Server applies, so a burst
// of runs whose Jobs exist costs nothing however large; Server records the
// submitting agent on the run). Each candidate is checked again one by one:
// the mark must still be the run's state and win its claim, no line may name
// its Job, and the run's Jobs are listed through the API. Only then is the
// run read in full and a missing Job created under the name the lost attempt
// would have used: that of the Scheduled state the mark claimed. A late
// original and the recovery then meet AlreadyExists, and only one Job exists.
//
// The filter counts only Job lines written since the window began (with a
// minute's margin for clock skew): a run Lazarus rescheduled and the agent
// marked again is looked at. A run rescheduled and marked again within the
// window (a Job line of its earlier submission there too) is left out: if
// that second mark is stranded, Lazarus takes the run, as before the agent
// looked.

// recoverLoop runs recovery passes until ctx ends; the Jobs go through
// workers on workCtx like submissions, and hurry as they do.
func (a *Agent) recoverLoop(ctx, workCtx context.Context, hurry hurrySignal) {
	log := klog.FromContext(ctx)
	a.limits.recoveryStarted()
	// The first pass cannot see marks younger than RecoverGrace, which a
	// stop just before this start may have left: look again once they are old.
	select {
	case a.recoverSoon <- struct{}{}:
	default:
	}
	for {
		if err := a.recoverPass(ctx, workCtx, hurry); err != nil && ctx.Err() == nil {
			log.Error(err, "Looking for flow runs Submitted without a Job failed; trying again later")
		}
		if a.limits.recoveryPassed() {
			a.Poke() // the limits know the truth now: runs may start
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.RecoverInterval):
		case <-a.recoverSoon:
			// A mark of unknown outcome: look once it is old enough.
			select {
			case <-ctx.Done():
				return
			case <-time.After(a.cfg.RecoverGrace + time.Second):
			}
		}
	}
}

// recoverPass hands every stranded candidate to a worker.
func (a *Agent) recoverPass(ctx, workCtx context.Context, hurry hurrySignal) error {
	now := a.cfg.Now()
	q := prefect.StrandedQuery{AgentID: a.agentID, SubmittedAfter: now.Add(-a.cfg.RecoverWindow), SubmittedBefore: now.Add(-a.cfg.RecoverGrace)}
	candidates, started := 0, 0
	pages, err := a.cfg.Prefect.EachStrandedCandidate(ctx, q, func(c prefect.StrandedCandidate) bool {
		candidates++
		a.limits.recoveryQueued()
		ok, stopped := a.startWorker(ctx, c.ID, func() { a.recoverRun(workCtx, hurry, c); a.limits.recoveryDone(c.ID) })
		if ok {
			started++
		} else {
			a.limits.recoveryDone("")
		}
		return !stopped
	})
	if candidates > 0 {
		klog.FromContext(ctx).V(1).Info("Looked for flow runs Submitted by this agent without a Job line", "candidates", candidates, "checked", started, "requests", pages, "took", a.cfg.Now().Sub(now).Round(time.Millisecond))
	}
	return err
}

// recoverRun creates the Job of a Submitted run that has none and never had:
// a Job the run's log names was created, and may have finished and been
// deleted since. The run is read again first (the candidate may be old): its
// current state must still be this agent's mark, and that mark must win its
// claim (claim.go), or nothing is created. Everything that can tell the run
// has its Job is checked before the Job is built (which may read a template
// over the network), and a build that fails now leaves the run to the next
// pass, never Failed: its Job was built once, and may be running.
func (a *Agent) recoverRun(ctx context.Context, hurry hurrySignal, c prefect.StrandedCandidate) {
	log := klog.FromContext(ctx).WithValues("flowRun", c.ID)
	by, ok := prefect.SubmittedBy(c.SerializedState)
	if !ok || by.AgentID != a.agentID || by.Namespace != a.cfg.Job.Namespace {
		return // another agent's mark, or one sharing this registration elsewhere
	}
	h, err := a.cfg.Prefect.ReadHistory(ctx, c.ID, nil)
	if err != nil {
		log.Error(err, "Could not read the history of a flow run Submitted by this agent; trying again later")
		return
	}
	i := prefect.Mark(h.Rows, by.Token)
	cur, ok := h.Current()
	if i < 0 || !ok || cur.ID != h.Rows[i].ID {
		log.V(1).Info("The flow run moved on since the look for stranded runs; nothing to recover", "state", h.State)
		return
	}
	_, winner, claim, ok := prefect.CurrentSubmission(h.Rows)
	if !ok || winner.Token != by.Token {
		log.V(1).Info("This agent's Submitted mark did not win its claim; creating no Job")
		return
	}
	stranded, ok, err := a.cfg.Prefect.ReadStrandedRun(ctx, c.ID, a.cfg.Now().Add(-3*time.Second))
	if err != nil {
		log.Error(err, "Could not read a flow run Submitted by this agent; trying again later")
		return
	}
	if !ok {
		return // deleted since
	}
	run := stranded.FlowRun
	sub := manifest.Submission{RunID: run.Id, Version: claim.Version}
	identifier := sub.Identifier()
	for _, line := range stranded.JobLines {
		if strings.Contains(line, "Submitted for execution: Job ") && strings.HasSuffix(line, "-"+identifier) {
			return // created once; finished and deleted since, or still there
		}
	}
	list, err := a.cfg.Kube.BatchV1().Jobs(a.cfg.Job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.Id})
	if err != nil {
		log.Error(err, "Could not list the Jobs of a flow run Submitted by this agent; trying again later")
		return
	}
	for i := range list.Items {
		if other, ok := manifest.SubmissionOf(&list.Items[i]); ok && other.Relaunch == "" && other.Version >= sub.Version {
			return // it has its Job
		}
	}
	job, _, err := a.buildJob(ctx, run, sub.Version, "")
	if err != nil {
		log.Error(err, "Could not build the Job of a flow run left Submitted by this agent; trying again at the next pass")
		return
	}
	log.Info("Recovering flow run: it was marked Submitted by this agent but has no Job", "submitted", h.Version, "markedAgo", a.cfg.Now().Sub(c.Marked).Round(time.Second))
	// Its Job was due before: it holds its slot under the limits whatever they say.
	a.limits.reserve(run.Id, sub.Version, factsOf(run))
	a.launch(ctx, hurry, launchRecovery, run, job, h.Version, by)
}
