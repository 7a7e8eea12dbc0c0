package agent

import (
	"context"
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

// handleLate applies the policy to a late run: a line saying how late it
// was, then the run set Skipped (a final state of Prefect 1: Skipped is a
// Success, so the run is done without running) or Failed.
func (a *Agent) handleLate(ctx context.Context, run prefect.FlowRun, by time.Duration) {
	ctx, cancel := freshContext(ctx)
	defer cancel()
	log := klog.FromContext(ctx).WithValues("flowRun", run.Id)
	limit := a.late.max
	version := run.Version
	if a.late.policy == LateSkip {
		message := fmt.Sprintf("Skipped: the run was %s late when the agent first saw it, more than --max-lateness %s (--late-runs skip)", roundLate(by), limit)
		log.Info("Skipping a late flow run", "late", roundLate(by), "maxLateness", limit)
		a.runLog(ctx, run.Id, prefect.LevelWarning, message)
		if err := a.cfg.Prefect.SetFlowRunState(ctx, run.Id, &version, prefect.SkippedState(message)); err != nil {
			log.Error(err, "Could not set the late flow run Skipped")
		}
		return
	}
	message := fmt.Sprintf("The run was %s late when the agent first saw it, more than --max-lateness %s (--late-runs fail): it is failed without running", roundLate(by), limit)
	a.fail(ctx, run.Id, &version, message)
}

// roundLate rounds a lateness for people.
func roundLate(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
