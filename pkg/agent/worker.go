package agent

import (
	"context"
	"time"
)

// startWorker claims the flow run id in inFlight, takes a worker slot and
// runs work on a new worker; the slot and the claim are given back when work
// returns. A run already in flight is skipped (started false). When ctx ends
// while waiting for a slot, the claim is given back and stopped is true: the
// caller hands out no more runs.
func (a *Agent) startWorker(ctx context.Context, id string, work func()) (started, stopped bool) {
	if _, busy := a.inFlight.LoadOrStore(id, struct{}{}); busy {
		return false, false
	}
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		a.inFlight.Delete(id)
		return false, true
	}
	a.workers.Add(1)
	go func() {
		defer func() {
			<-a.slots
			a.inFlight.Delete(id)
			a.workers.Done()
		}()
		work()
	}()
	return true, false
}

// settle waits ClaimSettle after a mark, for writes in flight to land. The
// wait sends no request, so the worker lends its slot to another run
// meanwhile and takes one back after: --concurrency bounds the submissions at
// work, not those waiting, and a burst is not held to Concurrency runs per
// ClaimSettle. Only a worker (startWorker) may call it, as it holds a slot.
// It returns ctx's error when ctx ends first; the worker holds a slot again
// either way, for startWorker to give back.
func (a *Agent) settle(ctx context.Context) error {
	<-a.slots
	defer func() { a.slots <- struct{}{} }()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(a.cfg.ClaimSettle):
		return nil
	}
}
