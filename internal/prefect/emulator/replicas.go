package emulator

import "time"

// DefaultSubmittedLock is how long a GraphQL process refuses a second
// Submitted state for a flow run: src/prefect_server/api/states.py line 21,
// submitted_state_lock = ExpiringSet(duration_seconds=30).
const DefaultSubmittedLock = 30 * time.Second

// replica is one GraphQL process of Server. Its only state of its own is the
// Submitted lock, an ExpiringSet in the process's memory
// (src/prefect_server/utilities/collections.py ExpiringSet): another replica,
// or the same one after a restart, knows nothing of it.
type replica struct {
	// locks maps a flow run id to when its Submitted lock expires.
	locks map[string]time.Time
}

// pickReplica spreads requests over the replicas in turn, as a Service in
// front of the GraphQL Deployment of the Helm chart would. Callers hold e.mu.
func (e *Emulator) pickReplica() int {
	i := e.nextReplica % len(e.replicas)
	e.nextReplica++
	return i
}

// takeSubmittedLock is ExpiringSet.add (collections.py lines 38-64): false
// when the run id is in the replica's set; otherwise the id is added for the
// lock's duration. A refused add does not extend the lock. Callers hold e.mu.
func (e *Emulator) takeSubmittedLock(replicaIndex int, runID string) bool {
	rep := e.replicas[replicaIndex]
	now := e.now()
	if until, held := rep.locks[runID]; held && now.Before(until) {
		return false
	}
	rep.locks[runID] = now.Add(e.submittedLock)
	return true
}

// RestartGraphQL restarts every GraphQL replica: their Submitted locks are
// forgotten, as a process's memory is.
func (e *Emulator) RestartGraphQL() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rep := range e.replicas {
		rep.locks = map[string]time.Time{}
	}
}
