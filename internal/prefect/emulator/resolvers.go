package emulator

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// queuedRunsReturnedLimit is Server's config.queued_runs_returned_limit
// (src/prefect_server/config.toml line 15).
const queuedRunsReturnedLimit = 25

func (e *Emulator) queryRoot(info requestInfo) object {
	return func(field string, args map[string]any) (any, error) {
		switch field {
		case "hello":
			return "👋", nil
		case "tenant":
			var out []any
			for _, t := range e.tenants {
				if info.tenantID != "" && t.ID != info.tenantID {
					continue
				}
				out = append(out, mapObject(map[string]any{"id": t.ID, "name": t.Name, "slug": t.Slug}))
			}
			return out, nil
		case "auth_info":
			return mapObject(map[string]any{"tenant_id": info.tenantID}), nil
		case "flow_run":
			return e.queryFlowRuns(info, args)
		case "flow_run_by_pk":
			r := e.runs[asString(args["id"])]
			if r == nil || (info.tenantID != "" && r.TenantID != info.tenantID) {
				return nil, nil
			}
			return e.flowRunObject(r), nil
		}
		return nil, fmt.Errorf("emulator: query field %s is not implemented", field)
	}
}

func (e *Emulator) mutationRoot(info requestInfo) object {
	return func(field string, args map[string]any) (any, error) {
		input, _ := args["input"].(map[string]any)
		switch field {
		case "register_agent":
			return e.registerAgent(info, input)
		case "get_runs_in_queue":
			return e.getRunsInQueue(info, input)
		case "set_flow_run_states":
			return e.setFlowRunStates(info, input)
		case "set_task_run_states":
			return e.setTaskRunStates(input)
		case "write_run_logs":
			return e.writeRunLogs(input)
		case "update_flow_run_heartbeat":
			return e.updateFlowRunHeartbeat(input)
		case "update_task_run_heartbeat":
			return e.updateTaskRunHeartbeat(input)
		}
		if v, handled, err := e.runnerMutation(field, input); handled {
			return v, err
		}
		return nil, fmt.Errorf("emulator: mutation %s is not implemented", field)
	}
}

func (e *Emulator) tenantFor(info requestInfo, input map[string]any) (string, error) {
	tenant := asString(input["tenant_id"])
	if tenant == "" {
		tenant = info.tenantID
	}
	if tenant == "" || !e.hasTenant(tenant) || (info.tenantID != "" && tenant != info.tenantID) {
		return "", serverError("Invalid tenant ID")
	}
	return tenant, nil
}

func (e *Emulator) registerAgent(info requestInfo, input map[string]any) (any, error) {
	tenant, err := e.tenantFor(info, input)
	if err != nil {
		return nil, serverError("No tenant found.")
	}
	labels := asStrings(input["labels"])
	name := asString(input["name"])
	typ := asString(input["type"])
	key := agentKey(tenant, name, typ, info.coreVersion, labels)
	if a, ok := e.agents[key]; ok {
		return mapObject(map[string]any{"id": a.ID}), nil
	}
	a := &Agent{ID: newID(), TenantID: tenant, Name: name, Type: typ, CoreVersion: info.coreVersion, Labels: sortedCopy(labels)}
	e.agents[key] = a
	return mapObject(map[string]any{"id": a.ID}), nil
}

func (e *Emulator) getRunsInQueue(info requestInfo, input map[string]any) (any, error) {
	tenant, err := e.tenantFor(info, input)
	if err != nil {
		return nil, err
	}
	if input["labels"] == nil {
		// The real resolver sorts the labels it was given and crashes on null.
		return nil, serverError("'NoneType' object has no attribute 'sort'")
	}
	labels := asStrings(input["labels"])
	before := e.now()
	if b := asString(input["before"]); b != "" {
		t, err := time.Parse(time.RFC3339Nano, b)
		if err != nil {
			return nil, serverError("Could not parse DateTime: %s", b)
		}
		before = t
	}
	if info.agentID != "" {
		for _, a := range e.agents {
			if a.ID == info.agentID {
				a.LastQueried = e.now()
			}
		}
	}
	// Server (api/runs.py lines 460-509) selects the due runs of the tenant,
	// ordered by state_start_time asc (NULLS LAST: Running runs, whose
	// state has no start time, come after every due Scheduled run), takes
	// 75, and only then applies the label rule and keeps 25.
	var due []*FlowRun
	for _, id := range e.order {
		r := e.runs[id]
		if r.TenantID == tenant && r.queued(before) {
			due = append(due, r)
		}
	}
	sort.SliceStable(due, func(i, j int) bool {
		a, b := due[i].StateStartTime, due[j].StateStartTime
		if a.IsZero() || b.IsZero() {
			return !a.IsZero() && b.IsZero()
		}
		return a.Before(b)
	})
	if len(due) > 3*queuedRunsReturnedLimit {
		due = due[:3*queuedRunsReturnedLimit]
	}
	ids := []any{}
	for _, r := range due {
		if len(ids) == queuedRunsReturnedLimit {
			break
		}
		if labelsMatch(r.Labels, labels) {
			ids = append(ids, r.ID)
		}
	}
	return mapObject(map[string]any{"flow_run_ids": ids}), nil
}

// maxStatePayload is Server's limit on a serialized state
// (src/prefect_server/graphql/states.py lines 27-30: sys.getsizeof of the
// JSON text, which adds 49 bytes to its length, over 1000000).
const maxStatePayload = 1000000 - 49

// setFlowRunStates follows Server's resolver (graphql/states.py lines 16-48)
// and set_flow_run_state (api/states.py lines 24-134): the run must exist;
// version is ignored ("only for Cloud API compatibility") except on Cloud,
// which keeps version locking; a Submitted state takes the replica's 30 s
// lock before anything is written, whatever the run's state, and is refused
// while the lock is held; the lock stays taken even when the write after it
// fails.
func (e *Emulator) setFlowRunStates(info requestInfo, input map[string]any) (any, error) {
	var out []any
	for _, item := range asList(input["states"]) {
		in, _ := item.(map[string]any)
		id := asString(in["flow_run_id"])
		st, err := decodeState("flow", id, in["state"])
		if err != nil {
			return nil, err
		}
		r := e.runs[id]
		if r == nil {
			return nil, serverError("State update failed for flow run ID %s", id)
		}
		if version, ok := asInt(in["version"]); ok && e.backend == Cloud && version != r.Version {
			return nil, errorWithCode("VERSION_LOCKING_ERROR",
				"State update failed for flow run ID %s: provided version %d but current version is %d.", id, version, r.Version)
		}
		if isSubmitted(st.typ) && !e.takeSubmittedLock(info.replica, r.ID) {
			return nil, serverError("State update failed: this run has already been submitted.")
		}
		version := e.readVersionThenWait(&r.Version)
		e.setFlowRunState(r, st.at(version), info.agentID)
		if a := e.agentByID(r.AgentID); a != nil {
			r.agentName, r.agentLabels = a.Name, a.Labels // for filters through flow_run.agent
		}
		out = append(out, mapObject(map[string]any{"id": r.ID, "status": "SUCCESS", "message": nil}))
	}
	return mapObject(map[string]any{"states": out}), nil
}

// setTaskRunStates follows Server's resolver (graphql/states.py lines 51-92)
// and set_task_run_state (api/states.py lines 137-217): no lock, version
// ignored except on Cloud, and a Running state needs its flow run Running.
func (e *Emulator) setTaskRunStates(input map[string]any) (any, error) {
	var out []any
	for _, item := range asList(input["states"]) {
		in, _ := item.(map[string]any)
		id := asString(in["task_run_id"])
		st, err := decodeState("task", id, in["state"])
		if err != nil {
			return nil, err
		}
		tr := e.taskRuns[id]
		if tr == nil {
			return nil, serverError("State update failed for task run ID %s", id)
		}
		if version, ok := asInt(in["version"]); ok && e.backend == Cloud && version != tr.Version {
			return nil, errorWithCode("VERSION_LOCKING_ERROR",
				"State update failed for task run ID %s: provided version %d but current version is %d.", id, version, tr.Version)
		}
		if isRunning(st.typ) {
			if fr := e.runs[tr.FlowRunID]; fr == nil || fr.State != "Running" {
				return nil, serverError("State update failed for task run ID %s: provided a running state but associated flow run %s is not in a running state.", id, tr.FlowRunID)
			}
		}
		version := e.readVersionThenWait(&tr.Version)
		e.insertTaskRunState(tr, st.at(version))
		out = append(out, mapObject(map[string]any{"id": tr.ID, "status": "SUCCESS", "message": nil}))
	}
	return mapObject(map[string]any{"states": out}), nil
}

func (e *Emulator) writeRunLogs(input map[string]any) (any, error) {
	logs := asList(input["logs"])
	for _, item := range logs {
		in, _ := item.(map[string]any)
		if e.runs[asString(in["flow_run_id"])] == nil {
			return nil, serverError("Invalid flow run ID.")
		}
	}
	for _, item := range logs {
		in, _ := item.(map[string]any)
		r := e.runs[asString(in["flow_run_id"])]
		ts := e.now()
		if s := asString(in["timestamp"]); s != "" {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				ts = t
			}
		}
		level := asString(in["level"])
		if level == "" {
			level = "INFO"
		}
		r.Logs = append(r.Logs, Log{
			FlowRunID: r.ID, TaskRunID: asString(in["task_run_id"]), Name: asString(in["name"]),
			Level: level, Message: asString(in["message"]), Timestamp: ts,
		})
	}
	return mapObject(map[string]any{"success": true, "error": nil}), nil
}

// flowRunObject resolves a flow_run row. Resolvers run with e.mu held.
func (e *Emulator) flowRunObject(r *FlowRun) object {
	return func(field string, args map[string]any) (any, error) {
		if v, handled, err := e.runnerFlowRunField(r, field, args); handled {
			return v, err
		}
		switch field {
		case "id":
			return r.ID, nil
		case "flow_id":
			return r.Flow.ID, nil
		case "name":
			return r.Name, nil
		case "version":
			return r.Version, nil
		case "state":
			return r.State, nil
		case "state_message":
			return r.StateMessage, nil
		case "serialized_state":
			return jsonValue(r.SerializedState), nil
		case "parameters":
			return jsonValue(r.Parameters), nil
		case "run_config":
			return jsonValue(r.RunConfig), nil
		case "labels":
			return asAnyList(r.Labels), nil
		case "scheduled_start_time":
			return r.ScheduledStartTime, nil
		case "state_start_time":
			return nullTime(r.StateStartTime), nil
		case "state_timestamp":
			return r.StateTimestamp, nil
		case "agent_id":
			if r.AgentID == "" {
				return nil, nil
			}
			return r.AgentID, nil
		case "heartbeat":
			return nullTime(r.Heartbeat), nil
		case "times_resurrected":
			return r.TimesResurrected, nil
		case "states":
			return stateRows(r.States, args, func(rec StateRecord) object { return flowRunStateObject(r.ID, rec) })
		case "flow":
			return flowObject(r.Flow), nil
		case "logs":
			where, _ := args["where"].(map[string]any)
			limit, hasLimit := asInt(args["limit"])
			var out []any
			for _, l := range orderLogs(r.Logs, args["order_by"]) {
				if hasLimit && len(out) >= limit {
					break
				}
				ok, err := matchLog(l, where)
				if err != nil {
					return nil, err
				}
				if ok {
					out = append(out, logObject(l))
				}
			}
			return out, nil
		case "task_runs":
			where, _ := args["where"].(map[string]any)
			var out []any
			for _, tr := range r.TaskRuns {
				ok, err := matchTaskRun(tr, where)
				if err != nil {
					return nil, err
				}
				if ok {
					out = append(out, taskRunObject(tr))
				}
			}
			return out, nil
		}
		return nil, fmt.Errorf("emulator: flow_run.%s is not implemented", field)
	}
}

func flowObject(f Flow) object {
	return mapObject(map[string]any{
		"id": f.ID, "name": f.Name, "version": f.Version, "core_version": f.CoreVersion,
		"storage": jsonValue(f.Storage), "environment": jsonValue(f.Environment),
	})
}

// taskRunObject resolves a task_run row. Resolvers run with e.mu held.
func taskRunObject(tr *TaskRun) object {
	return func(field string, args map[string]any) (any, error) {
		switch field {
		case "id":
			return tr.ID, nil
		case "task_id":
			return tr.TaskID, nil
		case "flow_run_id":
			return tr.FlowRunID, nil
		case "version":
			return tr.Version, nil
		case "state":
			return tr.State, nil
		case "serialized_state":
			return jsonValue(tr.SerializedState), nil
		case "state_start_time":
			return nullTime(tr.StateStartTime), nil
		case "heartbeat":
			return nullTime(tr.Heartbeat), nil
		case "states":
			return stateRows(tr.States, args, func(rec StateRecord) object { return taskRunStateObject(tr.ID, rec) })
		}
		return nil, fmt.Errorf("emulator: task_run.%s is not implemented", field)
	}
}

// nullTime is a nullable timestamp column: the zero time is NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// mapObject resolves fields from a plain map; nested maps need no arguments.
func mapObject(m map[string]any) object {
	return func(field string, _ map[string]any) (any, error) {
		return m[field], nil
	}
}

// jsonValue returns stored JSON as a raw value, or nil for none.
func jsonValue(raw json.RawMessage) any {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// updateFlowRunHeartbeat follows Server's resolver
// (src/prefect_server/graphql/runs.py resolve_update_flow_run_heartbeat): it
// answers success at once and updates the heartbeat in the background
// (api/runs.py update_flow_run_heartbeat), so an unknown id is not reported.
func (e *Emulator) updateFlowRunHeartbeat(input map[string]any) (any, error) {
	if r := e.runs[asString(input["flow_run_id"])]; r != nil {
		r.Heartbeat = e.now()
		e.touch(r)
	}
	return mapObject(map[string]any{"success": true, "error": nil}), nil
}

// updateTaskRunHeartbeat is the task-run twin of updateFlowRunHeartbeat
// (graphql/runs.py resolve_update_task_run_heartbeat, api/runs.py
// update_task_run_heartbeat: the task run's heartbeat only).
func (e *Emulator) updateTaskRunHeartbeat(input map[string]any) (any, error) {
	if tr := e.taskRuns[asString(input["task_run_id"])]; tr != nil {
		tr.Heartbeat = e.now()
	}
	return mapObject(map[string]any{"success": true, "error": nil}), nil
}

// decodeState reads the serialized state of one set_*_run_states item as
// Server's resolver does (graphql/states.py): over 1 MB it is refused, and
// what does not load as a Prefect state fails the update for that run.
func decodeState(kind, id string, state any) (newState, error) {
	raw, err := json.Marshal(state)
	if err != nil {
		return newState{}, err
	}
	if len(raw) > maxStatePayload {
		return newState{}, serverError("State payload is too large.")
	}
	typ, msg, start, err := stateFields(raw)
	if err != nil || typ == "" {
		return newState{}, serverError("State update failed for %s run ID %s: the state is not a serialized Prefect state", kind, id)
	}
	return newState{typ: typ, message: msg, raw: raw, start: start}, nil
}

// at is the state with the version it is inserted at.
func (s newState) at(version int) newState {
	s.version = version
	return s
}
