package emulator

import (
	"encoding/json"
	"time"
)

// The state classes of Prefect 1.4.1 (src/prefect/engine/state.py) that
// Server's rules ask about: is_running() holds for Running and its subclass
// Cancelling, is_submitted() for Submitted, is_finished() for Finished and
// its subclasses.
var finishedStates = map[string]bool{
	"Finished": true, "Success": true, "Cached": true, "Mapped": true, "Looped": true, "Skipped": true,
	"Cancelled": true, "Failed": true, "TimedOut": true, "TriggerFailed": true, "ValidationFailed": true,
}

func isFinished(state string) bool { return finishedStates[state] }

// defaultStart is the start_time Prefect 1.4.1 gives a state built without
// one: now for Scheduled, Resume, Retrying (Scheduled.__init__) and Queued
// (Queued.__init__); none for Paused (an indefinite pause) and every other
// state.
func defaultStart(typ string, start *time.Time, now time.Time) *time.Time {
	if start != nil {
		return start
	}
	switch typ {
	case "Scheduled", "Resume", "Retrying", "Queued":
		return &now
	}
	return nil
}
func isRunning(state string) bool   { return state == "Running" || state == "Cancelling" }
func isSubmitted(state string) bool { return state == "Submitted" }

// newState is a state about to be inserted.
type newState struct {
	typ, message string
	raw          json.RawMessage
	start        *time.Time // the state's start_time, nil when it has none
	// version, when not zero, is the version read before the insert
	// (Config.StateInsertDelay), + 1; otherwise the stored version + 1.
	version int
}

// readVersionThenWait is Server's gap between reading the run's version and
// inserting the new state (api/states.py lines 44-106): with a
// StateInsertDelay, the emulator reads the version, lets other requests in
// for that long, then inserts with the version it read, so writes in the gap
// get the same version. Callers hold e.mu; it is released meanwhile.
func (e *Emulator) readVersionThenWait(stored *int) int {
	if e.insertDelay <= 0 {
		return 0
	}
	read := *stored + 1
	e.mu.Unlock()
	time.Sleep(e.insertDelay)
	e.mu.Lock()
	return read
}

// setFlowRunState is the part of Server's set_flow_run_state
// (src/prefect_server/api/states.py lines 66-119) after the Submitted lock: a
// Cancelled state first cancels every unfinished task run of the run (lines
// 70-87), then the state is inserted, then a Submitted state names the agent
// that sent it, when that agent exists (api/runs.py update_flow_run_agent,
// lines 421-441). Callers hold e.mu.
func (e *Emulator) setFlowRunState(r *FlowRun, s newState, agentID string) StateRecord {
	if s.typ == "Cancelled" {
		for _, tr := range r.TaskRuns {
			if !isFinished(tr.State) {
				e.insertTaskRunState(tr, newState{typ: s.typ, message: s.message, raw: s.raw, start: s.start})
			}
		}
	}
	rec := e.insertFlowRunState(r, s)
	if isSubmitted(s.typ) && agentID != "" && e.agentByID(agentID) != nil {
		r.AgentID = agentID
		e.touch(r)
	}
	return rec
}

// insertFlowRunState stores a flow run state as Server does
// (src/prefect_server/api/states.py set_flow_run_state, lines 93-115): a new
// flow_run_state row with version = the run's version + 1 and timestamp now;
// the trigger of migration 2021-03-16T221106 copies it into the flow_run row
// because its version is at least the stored one; the heartbeat moves for
// Running (and Cancelling) and Submitted states. The times are Postgres
// timestamptz values (the flow_run_state columns of the initial migration,
// services/postgres/alembic/versions/2020-06-24T092037_initial_database_migration.py),
// which keep microseconds: a state_timestamp read back is the stored one, as
// a key set paging on it needs. Callers hold e.mu.
func (e *Emulator) insertFlowRunState(r *FlowRun, s newState) StateRecord {
	now := e.now().Round(time.Microsecond)
	s.start = defaultStart(s.typ, s.start, now)
	rec := StateRecord{ID: newID(), Type: s.typ, Message: s.message, Version: r.Version + 1, Timestamp: now, StartTime: s.start, State: s.raw}
	if s.version > 0 {
		rec.Version = s.version
	}
	r.States = append(r.States, rec)
	if rec.Version >= r.Version {
		r.Version = rec.Version
		r.State, r.StateMessage, r.SerializedState = s.typ, s.message, s.raw
		r.StateTimestamp = now
		r.StateStartTime = time.Time{} // NULL without a start time (migration 2020-09-02T203435)
		if s.start != nil {
			r.StateStartTime = *s.start
		}
	}
	if isRunning(s.typ) || isSubmitted(s.typ) {
		r.Heartbeat = now
	}
	// The trigger's UPDATE of flow_run runs for every insert, whether or not
	// its version lets the state through: updated moves either way.
	r.Updated = now
	return rec
}

// touch records an UPDATE of the flow_run row (FlowRun.Updated). Callers
// hold e.mu.
func (e *Emulator) touch(r *FlowRun) {
	r.Updated = e.now().Round(time.Microsecond)
}

// insertTaskRunState stores a task run state as Server does
// (src/prefect_server/api/states.py set_task_run_state, lines 193-215): the
// same row and trigger rules; the heartbeat moves for Running states only.
// Times keep microseconds, as insertFlowRunState's. Callers hold e.mu.
func (e *Emulator) insertTaskRunState(tr *TaskRun, s newState) StateRecord {
	now := e.now().Round(time.Microsecond)
	s.start = defaultStart(s.typ, s.start, now)
	rec := StateRecord{ID: newID(), Type: s.typ, Message: s.message, Version: tr.Version + 1, Timestamp: now, StartTime: s.start, State: s.raw}
	if s.version > 0 {
		rec.Version = s.version
	}
	tr.States = append(tr.States, rec)
	if rec.Version >= tr.Version {
		tr.Version = rec.Version
		tr.State, tr.SerializedState = s.typ, s.raw
		tr.StateStartTime = time.Time{}
		if s.start != nil {
			tr.StateStartTime = *s.start
		}
	}
	if isRunning(s.typ) {
		tr.Heartbeat = now
	}
	return rec
}
