package agent

import "context"

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
