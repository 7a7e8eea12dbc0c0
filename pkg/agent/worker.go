package agent

import (
	"context"
	"time"
)

// startWorker claims the flow run id in inFlight, takes a worker slot and
// runs work on a new worker; the slot (lent meanwhile while work settles)
// and the claim are given back when work returns. A run already in flight is skipped (started false). When ctx ends
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
// meanwhile and takes one back after (the channel serves waiting senders in
// order): --concurrency bounds the submissions at work, and a burst is not
// held to Concurrency runs per ClaimSettle. At most settleLending times
// Concurrency runs wait with their slot lent, so that a stop finds a bounded
// number of runs marked without their Job yet; past that, a run waits holding
// its slot. Only a worker (startWorker) may call it, as it holds a slot. It
// returns ctx's error when ctx ends first; the worker holds a slot again
// either way (waiting for one if need be), for startWorker to give back.
func (a *Agent) settle(ctx context.Context) error {
	select {
	case a.settling <- struct{}{}:
		<-a.slots
		defer func() { a.slots <- struct{}{}; <-a.settling }()
	default:
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(a.cfg.ClaimSettle):
		return nil
	}
}

// settleLending is how many runs per --concurrency slot may wait out
// ClaimSettle with their slot lent: enough for about settleLending times
// Concurrency runs a second.
const settleLending = 8
