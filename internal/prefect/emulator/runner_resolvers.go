package emulator

import (
	"encoding/json"
	"sort"
)

// GraphQL fields that Prefect's flow runner reads and writes (the list and
// when each is sent: ../shared/reference/prefect1-flow-runner.md). Resolvers
// run with e.mu held.

// runnerMutation answers the runner's mutations; handled is false for others.
func (e *Emulator) runnerMutation(field string, input map[string]any) (value any, handled bool, err error) {
	e.runner.init()
	switch field {
	case "get_or_create_task_run_info":
		v, err := e.getOrCreateTaskRunInfo(input)
		return v, true, err
	case "set_task_run_name":
		v, err := e.setTaskRunName(input)
		return v, true, err
	}
	return nil, false, nil
}

// getOrCreateTaskRunInfo follows src/prefect_server/api/runs.py
// get_or_create_task_run_info: the task run of (flow run, task, map index),
// map index -1 when none is given; when there is none, a new one (version 0,
// Pending "Task run created") if the task exists, else "Invalid task ID".
func (e *Emulator) getOrCreateTaskRunInfo(input map[string]any) (any, error) {
	runID, taskID := asString(input["flow_run_id"]), asString(input["task_id"])
	mapIndex := -1
	if i, ok := asInt(input["map_index"]); ok {
		mapIndex = i
	}
	r := e.runs[runID]
	if r != nil {
		for _, tr := range r.TaskRuns {
			if tr.TaskID == taskID && e.runner.mapIndexOf(tr.ID) == mapIndex {
				return taskRunInfo(tr), nil
			}
		}
	}
	task := e.runner.task(taskID)
	if task == nil {
		return nil, serverError("Invalid task ID")
	}
	if r == nil {
		// The task run's foreign key to flow_run fails the insert.
		return nil, serverError("Invalid flow run ID")
	}
	created := json.RawMessage(`{"type": "Pending", "message": "Task run created", "__version__": "1.4.1"}`)
	tr := &TaskRun{ID: newID(), TaskID: taskID, FlowRunID: r.ID, Version: 0, State: "Pending", SerializedState: created,
		States: []StateRecord{{ID: newID(), Type: "Pending", Message: "Task run created", Version: 0, Timestamp: e.now(), State: created}}}
	r.TaskRuns = append(r.TaskRuns, tr)
	e.taskRuns[tr.ID] = tr
	e.runner.taskOfRun[tr.ID] = task
	if mapIndex != -1 {
		e.runner.mapIndex[tr.ID] = mapIndex
	}
	return taskRunInfo(tr), nil
}

func taskRunInfo(tr *TaskRun) object {
	return mapObject(map[string]any{"id": tr.ID, "version": tr.Version, "state": tr.State, "serialized_state": jsonValue(tr.SerializedState)})
}

// setTaskRunName follows src/prefect_server/api/runs.py set_task_run_name:
// an empty name is refused; an unknown task run updates no row (success false).
func (e *Emulator) setTaskRunName(input map[string]any) (any, error) {
	id, name := asString(input["task_run_id"]), asString(input["name"])
	if name == "" {
		return nil, serverError("Invalid name")
	}
	if e.taskRuns[id] == nil {
		return mapObject(map[string]any{"success": false, "error": nil}), nil
	}
	e.runner.names[id] = name
	return mapObject(map[string]any{"success": true, "error": nil}), nil
}

func (s *runnerState) task(id string) *RegisteredTask {
	for _, f := range s.flows {
		for i := range f.Tasks {
			if f.Tasks[i].ID == id {
				return &f.Tasks[i]
			}
		}
	}
	return nil
}

// runnerFlowRunField answers the flow_run fields the runner reads that the
// agent does not: context, the flow's settings, run config and project, and
// task_runs filtered on map_index with their task and map index.
func (e *Emulator) runnerFlowRunField(r *FlowRun, field string, args map[string]any) (value any, handled bool, err error) {
	e.runner.init()
	switch field {
	case "context":
		if c, ok := e.runner.contexts[r.ID]; ok {
			return jsonValue(c), true, nil
		}
		return json.RawMessage(`{}`), true, nil
	case "flow":
		return e.runnerFlowObject(r.Flow), true, nil
	case "task_runs":
		where, _ := args["where"].(map[string]any)
		cond, filtersMapIndex := where["map_index"].(map[string]any)
		if !filtersMapIndex {
			return nil, false, nil
		}
		rest := map[string]any{}
		for k, v := range where {
			if k != "map_index" {
				rest[k] = v
			}
		}
		var out []any
		for _, tr := range r.TaskRuns {
			ok, err := compareInt(e.runner.mapIndexOf(tr.ID), false, cond)
			if err != nil {
				return nil, true, err
			}
			if !ok {
				continue
			}
			if ok, err = matchTaskRun(tr, rest); err != nil {
				return nil, true, err
			} else if ok {
				out = append(out, e.runnerTaskRunObject(tr))
			}
		}
		return out, true, nil
	}
	return nil, false, nil
}

// runnerFlowObject adds the columns of a registered flow to flowObject's.
func (e *Emulator) runnerFlowObject(f Flow) object {
	base := flowObject(f)
	reg := e.runner.flows[f.ID]
	return func(field string, args map[string]any) (any, error) {
		switch field {
		case "settings":
			// Server keeps heartbeat_enabled in the flow group's settings
			// (src/prefect_server/api/flow_groups.py); the flow's own settings
			// column, which the runner reads, is {} unless written directly.
			if reg != nil {
				return jsonValue(reg.Settings), nil
			}
			return json.RawMessage(`{}`), nil
		case "run_config":
			if reg != nil {
				return jsonValue(reg.RunConfig), nil
			}
			return nil, nil
		case "project":
			// Server puts every flow in a project; the emulator has one.
			return mapObject(map[string]any{"id": defaultProjectID, "name": "default"}), nil
		}
		return base(field, args)
	}
}

// defaultProjectID is the id of the one project the emulator's flows are in.
const defaultProjectID = "6f6c6f77-0000-4000-8000-000000000001"

// runnerTaskRunObject adds the task, map index and name to taskRunObject's.
func (e *Emulator) runnerTaskRunObject(tr *TaskRun) object {
	base := taskRunObject(tr)
	task := e.runner.taskOfRun[tr.ID]
	mapIndex := e.runner.mapIndexOf(tr.ID)
	name := e.runner.names[tr.ID]
	return func(field string, args map[string]any) (any, error) {
		switch field {
		case "task":
			if task == nil {
				return mapObject(map[string]any{"id": tr.TaskID, "slug": nil, "name": ""}), nil
			}
			return mapObject(map[string]any{"id": task.ID, "slug": task.Slug, "name": task.Name}), nil
		case "map_index":
			return mapIndex, nil
		case "name":
			if name == "" {
				return nil, nil
			}
			return name, nil
		}
		return base(field, args)
	}
}

// RegisteredFlows returns the registered flows, by name then version.
func (e *Emulator) RegisteredFlows() []RegisteredFlow {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runner.init()
	var out []RegisteredFlow
	for _, f := range e.runner.flows {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out
}
