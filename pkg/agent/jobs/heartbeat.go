package jobs

import (
	"context"
	"sort"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// Keeping held runs alive. On Prefect Server, Lazarus reschedules a
// Submitted or Running run whose heartbeat is older than 10 min (and that
// has no task run in a running or due state); only its flow runner moves the
// heartbeat. A Job the agent holds back on purpose (waiting within its
// pending policy), and a relaunch whose pod has not started the flow, have no
// flow runner yet: the agent sends their runs' heartbeats every
// HeartbeatInterval, so only the agent's own timeout ends the wait.

// heldRuns is the set of Jobs whose runs get heartbeats, by Job key.
type heldRuns struct {
	mu   sync.Mutex
	runs map[string]string // Job key -> flow run id
}

func newHeldRuns() *heldRuns { return &heldRuns{runs: map[string]string{}} }

// set records whether the Job's run is held.
func (h *heldRuns) set(key, runID string, held bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if held && runID != "" {
		h.runs[key] = runID
		return
	}
	delete(h.runs, key)
}

// ids lists the held runs, once each.
func (h *heldRuns) ids() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	out := make([]string, 0, len(h.runs))
	for _, id := range h.runs {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// holds tells whether the agent keeps the Job's run alive: the Job waits on
// purpose, or it relaunches the run and its flow has not started.
func holds(job *batchv1.Job, in inspection) bool {
	if in.waiting != nil {
		return true
	}
	sub, ok := manifest.SubmissionOf(job)
	return ok && sub.Relaunch != "" && !in.flowStarted && !manifest.JobFinished(job)
}

// sendHeartbeats sends one heartbeat for each held run.
func (c *Controller) sendHeartbeats(ctx context.Context) {
	log := klog.FromContext(ctx)
	for _, id := range c.held.ids() {
		if ctx.Err() != nil {
			return
		}
		if err := c.prefect.Heartbeat(ctx, id); err != nil {
			log.V(1).Info("Could not send the flow run's heartbeat", "flowRun", id, "err", err.Error())
		}
	}
}
