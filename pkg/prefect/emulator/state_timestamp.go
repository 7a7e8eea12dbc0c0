package emulator

import "time"

// stateTimestamp is when the run's current state was set (flow_run.state_timestamp).
func (r *FlowRun) stateTimestamp() time.Time {
	if len(r.States) == 0 {
		return time.Time{}
	}
	return r.States[len(r.States)-1].Timestamp
}
