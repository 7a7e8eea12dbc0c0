package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// report writes fresh problems to the flow run and fails (or reschedules)
// it, unless it has finished. A problem counts as reported only once Prefect
// accepted its log line and its state; any other outcome is an error.
func (c *Controller) report(ctx context.Context, job *batchv1.Job, runID string, fresh []problem) error {
	log := klog.FromContext(ctx).WithValues("job", klog.KObj(job), "flowRun", runID)
	state, exists, err := c.runState(ctx, runID)
	if err != nil {
		return err
	}
	if !exists {
		log.Info("The Job's flow run no longer exists in Prefect; nothing to report to")
		c.reported.add(job, fresh)
		return nil
	}
	if changesState(fresh) && !prefect.Finished(state.State) {
		current, why, err := c.currentSubmission(ctx, job, runID)
		if err != nil {
			return err
		}
		if !current {
			// A Job of an earlier submission (another namespace's, or one
			// the run was submitted again after) must not fail the run's
			// current submission: one line, and nothing else.
			log.Info("Not reporting to the flow run: the Job is not its current submission", "why", why, "problem", fresh[0].reason)
			if err := c.runs.MustLand(ctx, runID, prefect.LevelWarning, fmt.Sprintf("Job %s, of an earlier submission of this run, reports: %s. The run's current submission is left alone: %s", job.Name, fresh[0].message, why)); err != nil {
				return err
			}
			c.metrics.CountDrift(DriftOtherSubmission)
			c.reported.add(job, fresh)
			return nil
		}
	}
	for _, p := range fresh {
		logged := c.reported.logged(job, p.key)
		if !logged && p.unlessFinished && prefect.Finished(state.State) {
			c.reported.add(job, []problem{p})
			continue
		}
		if p.key == keyCompleted && state.State == "Running" {
			// A flow whose task run retries later exits and leaves the run
			// Running (Prefect 1): not necessarily a flow that failed to report.
			p.message = fmt.Sprintf("Job %s completed while the flow run is Running: if a task run waits for a retry, the agent relaunches the run when the retry is due; otherwise the flow's process exited without reporting a final state", job.Name)
		}
		if !logged {
			log.Info("Reporting to the flow run", "reason", p.reason, "level", p.level, "message", p.message)
			if err := c.runs.MustLand(ctx, runID, p.level, p.message); err != nil {
				return err
			}
			c.reported.markLogged(job, p.key)
			c.metrics.failuresReported.WithLabelValues(p.reason).Inc()
			c.events.On(job, corev1.EventTypeWarning, p.eventReason(), p.message)
			if p.failedPod != "" {
				c.saveEvidence(ctx, job, runID, p)
			}
		}
		if handsBack(p) && !c.reported.of(job)[p.key] {
			if err := c.handBack(ctx, runID, job.Name); err != nil {
				return err
			}
		}
		if p.level == prefect.LevelError || p.reschedule {
			next := prefect.FailedState(p.message)
			if p.reschedule {
				next = prefect.ScheduledState(p.message, c.now())
			}
			if state, err = c.setState(ctx, runID, state, next); err != nil {
				return err
			}
		}
		c.reported.add(job, []problem{p})
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
func (c *Controller) setState(ctx context.Context, runID string, state prefect.RunState, next json.RawMessage) (prefect.RunState, error) {
	for attempt := 0; ; attempt++ {
		if prefect.Finished(state.State) {
			return state, nil
		}
		version := state.Version
		err := c.prefect.SetFlowRunState(ctx, runID, &version, next)
		if err == nil {
			state.State, state.Version = prefect.StateType(next), state.Version+1
			return state, nil
		}
		if !errors.Is(err, prefect.ErrVersionLocked) || attempt >= 3 {
			return state, err
		}
		fresh, exists, readErr := c.runState(ctx, runID)
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
func (c *Controller) runState(ctx context.Context, runID string) (prefect.RunState, bool, error) {
	states, err := c.prefect.FlowRunStates(ctx, []string{runID})
	if err != nil {
		return prefect.RunState{}, false, err
	}
	st, ok := states[runID]
	return st, ok, nil
}
