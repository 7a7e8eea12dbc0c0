package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Late runs: a run whose scheduled start is older than MaxLateness when the
// agent first sees it (after an outage of the agent, say) is run, skipped or
// failed as the LateRuns policy says. Prefect 1.4.1's agent ran every run,
// however late.

// Policies for late runs.
const (
	LateRun  = "run"
	LateSkip = "skip"
	LateFail = "fail"
)

// LatePolicies lists them, the default first.
var LatePolicies = []string{LateRun, LateSkip, LateFail}

// lateness remembers when the agent first saw each run in the queue.
type lateness struct {
	max    time.Duration
	policy string
	now    func() time.Time

	mu sync.Mutex
	// seen holds each run's first and last sighting.
	seen map[string][2]time.Time
}

func newLateness(max time.Duration, policy string, now func() time.Time) *lateness {
	if policy == "" {
		policy = LateRun
	}
	return &lateness{max: max, policy: policy, now: now, seen: map[string][2]time.Time{}}
}

// enabled tells whether late runs are handled otherwise than run.
func (l *lateness) enabled() bool { return l != nil && l.max > 0 && l.policy != LateRun }

// late tells by how much a run was late when first seen, if by more than
// the maximum. Runs not seen for ten minutes are forgotten.
func (l *lateness) late(id string, start time.Time) (time.Duration, bool) {
	if !l.enabled() {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for other, s := range l.seen {
		if now.Sub(s[1]) > 10*time.Minute {
			delete(l.seen, other)
		}
	}
	s, ok := l.seen[id]
	if !ok {
		s[0] = now
	}
	s[1] = now
	l.seen[id] = s
	by := s[0].Sub(start)
	return by, by > l.max
}

// handleLate applies the policy to a late run: like a submission, it first
// claims the run (claim.go), so only the agent whose claim wins writes; then
// a line saying how late it was, and the run set Skipped (a final state of
// Prefect 1: Skipped is a Success, so the run is done without running) or
// Failed.
func (a *Agent) handleLate(ctx context.Context, hurry hurrySignal, run prefect.FlowRun, by time.Duration) {
	log := klog.FromContext(ctx).WithValues("flowRun", run.Id)
	h, err := a.reread(ctx, run, nil)
	if errors.Is(err, errNotAsPolled) {
		log.V(1).Info("The late flow run changed since the poll; leaving it", "change", err.Error())
		return
	}
	if err != nil {
		log.Error(err, "Could not read the late flow run again before claiming it; it stays for a later poll")
		return
	}
	claim := prefect.Submission{AgentID: a.agentID, Agent: a.cfg.Name, Namespace: a.cfg.Job.Namespace, Token: newToken()}
	if _, won := a.claimRun(ctx, hurry, log, h, &claim, "Claimed by the agent to apply its late-run policy"); !won {
		return
	}
	limit := a.late.max
	if a.late.policy == LateSkip {
		message := fmt.Sprintf("Skipped: the run was %s late when the agent first saw it, more than --max-lateness %s (--late-runs skip)", roundLate(by), limit)
		log.Info("Skipping a late flow run", "late", roundLate(by), "maxLateness", limit)
		a.finish(ctx, run.Id, claim.Token, prefect.LevelWarning, message, prefect.SkippedState(message))
		return
	}
	message := fmt.Sprintf("The run was %s late when the agent first saw it, more than --max-lateness %s (--late-runs fail): it is failed without running", roundLate(by), limit)
	a.fail(ctx, run.Id, claim.Token, message)
}

// roundLate rounds a lateness for people.
func roundLate(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
