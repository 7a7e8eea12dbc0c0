package agent

import (
	"context"
	"time"

	"k8s.io/klog/v2"
)

// The stop. A stop never cuts between a run's Submitted mark and its Job. It
// goes through four states, each entered once, in this order:
//
//	polling ──ctx ends──▶ draining ──ShutdownTimeout──▶ hurrying ──ShutdownGrace──▶ abandoned
//
//   - polling: the poll loop and recovery take runs and hand them to workers.
//     They run on pollCtx, which ends with the agent's context (or the
//     leader's term), and the Job controller on its own child of it.
//   - draining: pollCtx ended, so no run is taken any more (a worker still
//     waiting for a run's start time leaves it Scheduled); submissions in
//     flight go on as usual on workCtx, which a stop does not end, and the
//     Job controller winds down alongside them. In flight are up to
//     Concurrency runs at work and up to settleLending times as many
//     waiting out ClaimSettle with their slot lent (settle, worker.go).
//   - hurrying: ShutdownTimeout later the stop hurries (drain closes the
//     hurry signal, which work hands to every submission, recovery and
//     late-run claim it starts): Job creation and the claim's read-back stop
//     retrying, and a run whose Job could not be created goes back to
//     Scheduled. Reports that must go out even now are written on a fresh
//     context (freshContext).
//   - abandoned: ShutdownGrace later workCtx ends and what is left stops; a
//     run left Submitted is recovered at the next start (recover.go).
//
// work (agent.go) runs the states; drain runs the last three.

// hurrySignal is the hurrying state as in-flight work sees it: closed once
// the stop hurries.
type hurrySignal <-chan struct{}

// hurried tells whether in-flight work must wrap up.
func (s hurrySignal) hurried() bool {
	select {
	case <-s:
		return true
	default:
		return false
	}
}

// drain waits for the submissions in flight once the poll stopped: as they
// are for ShutdownTimeout, hurried (by closing hurry) for ShutdownGrace,
// then abandoned (abandonWork ends workCtx).
func (a *Agent) drain(log klog.Logger, hurry chan<- struct{}, abandonWork context.CancelFunc) {
	done := make(chan struct{})
	go func() { a.workers.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(a.cfg.ShutdownTimeout):
	}
	log.Info("Hurrying the submissions still in flight: no more retries", "timeout", a.cfg.ShutdownTimeout)
	close(hurry)
	select {
	case <-done:
		return
	case <-time.After(a.cfg.ShutdownGrace):
	}
	log.Info("Abandoning the submissions still in flight; runs left Submitted are recovered at the next start", "grace", a.cfg.ShutdownGrace)
	abandonWork()
	<-done
}

// freshContext keeps ctx's values but not its end, for the reports that must
// go out even while the agent stops.
func freshContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
}

// reportTimeout bounds a report written on a fresh context.
const reportTimeout = 20 * time.Second
