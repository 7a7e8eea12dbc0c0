package jobs

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// A pod taken away mid-flow (evicted, preempted, deleted, its node lost)
// leaves the task runs it was running in Running. Prefect's task runner does
// not run a task run that is Running (engine/task_runner.py), so the fresh
// attempt (the Job's replacement pod, or the Job of a rescheduled run)
// would skip those tasks and exit with the run still Running, until
// Server's zombie killer fails them ten minutes later. When the agent
// reports the disruption, it hands those task runs back: Pending, the state
// a task run is created in, so the fresh attempt runs them.

// handsBack says whether reporting a problem hands the run's task runs back:
// a disrupted pod, or a Job that failed after one and is rescheduled.
func handsBack(p problem) bool {
	return strings.HasSuffix(p.key, "/disrupted") || p.reschedule
}

// handBack sets the run's task runs that were Running when the disruption was
// reported Pending, and says so on the run. A task run that a live runner
// changed meanwhile is left to it.
func (c *Controller) handBack(ctx context.Context, runID, jobName string) error {
	before := c.now()
	state, stale, err := c.prefect.RunningTaskRunsBefore(ctx, runID, before)
	if err != nil {
		return fmt.Errorf("reading the task runs of a disrupted flow run: %w", err)
	}
	if state != "Running" || len(stale) == 0 {
		return nil
	}
	msg := fmt.Sprintf("Task run was Running in a pod of Job %s that was taken away; handed back for the flow's fresh attempt", jobName)
	handed := 0
	for _, tr := range stale {
		ok, err := c.prefect.HandBack(ctx, tr, msg)
		if err != nil {
			return fmt.Errorf("handing back task run %s: %w", tr.ID, err)
		}
		if ok {
			handed++
		}
	}
	if handed == 0 {
		return nil
	}
	klog.FromContext(ctx).Info("Handed back the task runs of a disrupted pod", "flowRun", runID, "taskRuns", handed)
	return c.runs.MustLand(ctx, runID, prefect.LevelInfo, fmt.Sprintf("Handed back %d task run(s) that were Running in the disrupted pod of Job %s: the flow's fresh attempt runs them again", handed, jobName))
}
