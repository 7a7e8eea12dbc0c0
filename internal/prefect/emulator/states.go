package emulator

import (
	"encoding/json"
	"time"
)

// The state classes of Prefect 1.4.1 (src/prefect/engine/state.py) that
// Server's rules ask about: is_running() holds for Running and its subclass
// Cancelling, is_submitted() for Submitted.
func isRunning(state string) bool   { return state == "Running" || state == "Cancelling" }
func isSubmitted(state string) bool { return state == "Submitted" }

// newState is a state about to be inserted.
type newState struct {
	typ, message string
	raw          json.RawMessage
	start        *time.Time // the state's start_time, nil when it has none
}

// insertFlowRunState stores a flow run state as Server does
// (src/prefect_server/api/states.py set_flow_run_state, lines 93-115): a new
// flow_run_state row with version = the run's version + 1 and timestamp now;
// the trigger of migration 2021-03-16T221106 copies it into the flow_run row
// because its version is at least the stored one; the heartbeat moves for
// Running (and Cancelling) and Submitted states. Callers hold e.mu.
func (e *Emulator) insertFlowRunState(r *FlowRun, s newState) StateRecord {
	now := e.now()
	rec := StateRecord{ID: newID(), Type: s.typ, Message: s.message, Version: r.Version + 1, Timestamp: now, StartTime: s.start, State: s.raw}
	r.States = append(r.States, rec)
	if rec.Version >= r.Version {
		r.Version = rec.Version
		r.State, r.StateMessage, r.SerializedState = s.typ, s.message, s.raw
		r.StateTimestamp = now
		r.StateStartTime = now
		if s.start != nil {
			r.StateStartTime = *s.start
		}
	}
	if isRunning(s.typ) || isSubmitted(s.typ) {
		r.Heartbeat = now
	}
	return rec
}

// insertTaskRunState stores a task run state as Server does
// (src/prefect_server/api/states.py set_task_run_state, lines 193-215): the
// same row and trigger rules; the heartbeat moves for Running states only.
// Callers hold e.mu.
func (e *Emulator) insertTaskRunState(tr *TaskRun, s newState) StateRecord {
	now := e.now()
	rec := StateRecord{ID: newID(), Type: s.typ, Message: s.message, Version: tr.Version + 1, Timestamp: now, StartTime: s.start, State: s.raw}
	tr.States = append(tr.States, rec)
	if rec.Version >= tr.Version {
		tr.Version = rec.Version
		tr.State, tr.SerializedState = s.typ, s.raw
		tr.StateStartTime = now
		if s.start != nil {
			tr.StateStartTime = *s.start
		}
	}
	if isRunning(s.typ) {
		tr.Heartbeat = now
	}
	return rec
}
