package agent

import (
	"context"
	"strconv"
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
// the agent asks for its Submitted runs marked between RecoverWindow and
// RecoverGrace ago (one filtered query; Server records the submitting agent on
// the run). For each whose log does not name its Job, it lists the run's Jobs
// through the API and creates a missing one under the name the lost attempt
// would have used: the Submitted version minus one. A late original
// and the recovery then meet AlreadyExists, and only one Job exists.

// recoverLoop runs recovery passes until ctx ends; the Jobs go through
// workers on workCtx like submissions.
func (a *Agent) recoverLoop(ctx, workCtx context.Context) {
	log := klog.FromContext(ctx)
	a.limits.recoveryStarted()
	// The first pass cannot see marks younger than RecoverGrace, which a
	// stop just before this start may have left: look again once they are old.
	select {
	case a.recoverSoon <- struct{}{}:
	default:
	}
	for {
		if err := a.recoverPass(ctx, workCtx); err != nil && ctx.Err() == nil {
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
func (a *Agent) recoverPass(ctx, workCtx context.Context) error {
	now := a.cfg.Now()
	runs, err := a.cfg.Prefect.StrandedRuns(ctx, a.agentID, now.Add(-a.cfg.RecoverWindow), now.Add(-a.cfg.RecoverGrace), now.Add(-3*time.Second))
	if err != nil {
		return err
	}
	for _, run := range runs {
		a.limits.recoveryQueued()
		started, stopped := a.startWorker(ctx, run.Id, func() { a.recoverRun(workCtx, run); a.limits.recoveryDone(run.Id) })
		if !started {
			a.limits.recoveryDone("")
		}
		if stopped {
			return nil
		}
	}
	return nil
}

// recoverRun creates the Job of a Submitted run that has none and never had:
// a Job the run's log names was created, and may have finished and been
// deleted since. Everything that can tell the run has its Job is checked
// before the Job is built (which may read a template over the network), and
// a build that fails now leaves the run to the next pass, never Failed: its
// Job was built once, and may be running.
func (a *Agent) recoverRun(ctx context.Context, stranded prefect.StrandedRun) {
	run := stranded.FlowRun
	log := klog.FromContext(ctx).WithValues("flowRun", run.Id)
	by, ok := prefect.SubmittedBy(run.Serialized_state)
	if !ok || by.AgentID != a.agentID || by.Namespace != a.cfg.Job.Namespace {
		return // another agent's mark, or one sharing this registration elsewhere
	}
	_, identifier, err := manifest.JobName(manifest.DefaultJobPrefix, run.Id, run.Version-1, "")
	if err != nil {
		return
	}
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
	for _, j := range list.Items {
		if v, err := strconv.Atoi(j.Annotations[manifest.AnnotationFlowRunVersion]); err == nil && v >= run.Version-1 {
			return // it has its Job
		}
	}
	job, _, err := a.buildJob(ctx, run, run.Version-1, "")
	if err != nil {
		log.Error(err, "Could not build the Job of a flow run left Submitted by this agent; trying again at the next pass")
		return
	}
	log.Info("Recovering flow run: it was marked Submitted by this agent but has no Job", "submitted", run.Version)
	// Its Job was due before: it holds its slot under the limits whatever they say.
	a.limits.reserve(run.Id, run.Version-1, factsOf(run))
	a.launch(ctx, run, job, run.Version, true, "Recovered after the agent stopped between marking the run Submitted and creating its Job. ")
}
