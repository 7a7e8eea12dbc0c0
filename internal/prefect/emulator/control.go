package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"
)

// FlowRunSpec describes a flow run to schedule. Empty ids are generated; an
// empty State means Scheduled at ScheduledStartTime (now when zero).
type FlowRunSpec struct {
	ID                 string          `json:"id,omitempty"`
	TenantID           string          `json:"tenant_id,omitempty"`
	Name               string          `json:"name,omitempty"`
	Flow               Flow            `json:"flow"`
	Labels             []string        `json:"labels,omitempty"`
	RunConfig          json.RawMessage `json:"run_config,omitempty"`
	Parameters         json.RawMessage `json:"parameters,omitempty"`
	ScheduledStartTime time.Time       `json:"scheduled_start_time,omitzero"`
	State              string          `json:"state,omitempty"`
	TaskRuns           []TaskRunSpec   `json:"task_runs,omitempty"`
}

// TaskRunSpec describes a task run of a scheduled flow run.
type TaskRunSpec struct {
	ID         string        `json:"id,omitempty"`
	TaskID     string        `json:"task_id,omitempty"`
	Name       string        `json:"name,omitempty"`
	State      string        `json:"state,omitempty"`
	MaxRetries int           `json:"max_retries,omitempty"`
	RetryDelay time.Duration `json:"retry_delay,omitempty"`
}

// AddFlowRun schedules a flow run and returns it as stored.
func (e *Emulator) AddFlowRun(spec FlowRunSpec) (FlowRun, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	if spec.ID == "" {
		spec.ID = newID()
	}
	if _, exists := e.runs[spec.ID]; exists {
		return FlowRun{}, fmt.Errorf("flow run %s already exists", spec.ID)
	}
	if spec.TenantID == "" {
		spec.TenantID = e.tenants[0].ID
	}
	if !e.hasTenant(spec.TenantID) {
		return FlowRun{}, fmt.Errorf("unknown tenant %q", spec.TenantID)
	}
	if spec.Flow.ID == "" {
		spec.Flow.ID = newID()
	}
	if spec.Flow.Name == "" {
		spec.Flow.Name = "flow"
	}
	if spec.Flow.CoreVersion == "" {
		spec.Flow.CoreVersion = "1.4.1"
	}
	if spec.Name == "" {
		spec.Name = "run-" + spec.ID[:8]
	}
	if spec.ScheduledStartTime.IsZero() {
		spec.ScheduledStartTime = now
	}
	if spec.State == "" {
		spec.State = "Scheduled"
	}
	start := initialStart(spec.State, spec.ScheduledStartTime)
	state := serializedState(spec.State, "Flow run scheduled.", start)
	r := &FlowRun{
		ID: spec.ID, TenantID: spec.TenantID, Name: spec.Name, Flow: spec.Flow,
		Labels: sortedCopy(spec.Labels), RunConfig: spec.RunConfig, Parameters: spec.Parameters,
		ScheduledStartTime: spec.ScheduledStartTime, Version: 1, State: spec.State,
		StateMessage: "Flow run scheduled.", SerializedState: state, StateStartTime: timeOrZero(start), StateTimestamp: now, Updated: now,
		States: []StateRecord{{ID: newID(), Type: spec.State, Message: "Flow run scheduled.", Version: 1, Timestamp: now,
			StartTime: start, State: state}},
	}
	for _, ts := range spec.TaskRuns {
		if ts.ID == "" {
			ts.ID = newID()
		}
		if ts.TaskID == "" {
			ts.TaskID = newID()
		}
		if ts.State == "" {
			ts.State = "Scheduled"
		}
		tstart := initialStart(ts.State, spec.ScheduledStartTime)
		tstate := serializedState(ts.State, "Task run scheduled.", tstart)
		tr := &TaskRun{ID: ts.ID, TaskID: ts.TaskID, FlowRunID: r.ID, Name: ts.Name, MaxRetries: ts.MaxRetries, RetryDelay: ts.RetryDelay, Version: 1, State: ts.State,
			SerializedState: tstate, StateStartTime: timeOrZero(tstart),
			States: []StateRecord{{ID: newID(), Type: ts.State, Message: "Task run scheduled.", Version: 1, Timestamp: now,
				StartTime: tstart, State: tstate}}}
		r.TaskRuns = append(r.TaskRuns, tr)
		e.taskRuns[tr.ID] = tr
	}
	e.runs[r.ID] = r
	e.order = append(e.order, r.ID)
	return r.snapshot(), nil
}

// FlowRun returns a copy of a flow run with its states, logs and task runs.
func (e *Emulator) FlowRun(id string) (FlowRun, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.runs[id]
	if !ok {
		return FlowRun{}, false
	}
	return r.snapshot(), true
}

// FlowRuns returns copies of every flow run, oldest first.
func (e *Emulator) FlowRuns() []FlowRun {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]FlowRun, 0, len(e.order))
	for _, id := range e.order {
		out = append(out, e.runs[id].snapshot())
	}
	return out
}

// SetFlowRunState moves a run to a state as the flow runner or another
// client would through set_flow_run_states (for example Running or Success),
// with Server's rules for what follows (a Cancelled state cancels the
// unfinished task runs) but without the Submitted lock. Scheduled-family
// states start now. A user's cancellation is CancelFlowRun.
func (e *Emulator) SetFlowRunState(id, stateType, message string) (FlowRun, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.runs[id]
	if !ok {
		return FlowRun{}, fmt.Errorf("no flow run %s", id)
	}
	start := defaultStart(stateType, nil, e.now())
	e.setFlowRunState(r, newState{typ: stateType, message: message, raw: serializedState(stateType, message, start), start: start}, "")
	return r.snapshot(), nil
}

// CancelFlowRun cancels a run as the UI and the cancel_flow_run mutation do
// (src/prefect_server/api/states.py cancel_flow_run, lines 220-250): nothing
// for a finished run; Cancelling for a running one (Running or Cancelling);
// Cancelled otherwise, which also cancels its unfinished task runs. An empty
// message gets Server's default.
func (e *Emulator) CancelFlowRun(id, message string) (FlowRun, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.runs[id]
	if !ok {
		return FlowRun{}, fmt.Errorf("no flow run %s", id)
	}
	if isFinished(r.State) {
		return r.snapshot(), nil
	}
	typ, def := "Cancelled", "Flow run is cancelled"
	if isRunning(r.State) {
		typ, def = "Cancelling", "Flow run is cancelling"
	}
	if message == "" {
		message = def
	}
	e.setFlowRunState(r, newState{typ: typ, message: message, raw: serializedState(typ, message, nil)}, "")
	return r.snapshot(), nil
}

// SetFlowRunLabels replaces a run's labels as a user does in the UI
// (src/prefect_server/api/runs.py set_flow_run_labels: stored sorted).
func (e *Emulator) SetFlowRunLabels(id string, labels []string) (FlowRun, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.runs[id]
	if !ok {
		return FlowRun{}, fmt.Errorf("no flow run %s", id)
	}
	r.Labels = sortedCopy(labels)
	e.touch(r)
	return r.snapshot(), nil
}

// DeleteAgent removes an agent as the UI's "remove agent" does
// (src/prefect_server/api/agents.py delete_agent): the runs it submitted keep
// no agent_id (the foreign key is ON DELETE SET NULL, migration
// 2020-09-04T095858), and later marks under its id set none.
func (e *Emulator) DeleteAgent(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, a := range e.agents {
		if a.ID != id {
			continue
		}
		delete(e.agents, key)
		for _, r := range e.runs {
			if r.AgentID == id {
				r.AgentID = ""
				e.touch(r)
			}
		}
		return nil
	}
	return fmt.Errorf("no agent %s", id)
}

// SetTaskRunState moves a task run to a state as its flow runner would, for
// example Retrying with the start time of the retry, bumping its version.
func (e *Emulator) SetTaskRunState(id, stateType, message string, start time.Time) (TaskRun, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	tr, ok := e.taskRuns[id]
	if !ok {
		return TaskRun{}, fmt.Errorf("no task run %s", id)
	}
	startPtr := defaultStart(stateType, nil, e.now())
	if !start.IsZero() {
		startPtr = &start
	}
	e.insertTaskRunState(tr, newState{typ: stateType, message: message, raw: serializedState(stateType, message, startPtr), start: startPtr})
	c := *tr
	c.States = append([]StateRecord{}, tr.States...)
	return c, nil
}

// Agents returns the registered agents.
func (e *Emulator) Agents() []Agent {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Agent, 0, len(e.agents))
	for _, a := range e.agents {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Requests counts the GraphQL requests answered so far, by operation name.
func (e *Emulator) Requests() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.requests))
	for k, v := range e.requests {
		out[k] = v
	}
	return out
}

func (r *FlowRun) snapshot() FlowRun {
	c := *r
	c.Labels = append([]string{}, r.Labels...)
	c.States = append([]StateRecord{}, r.States...)
	c.Logs = append([]Log{}, r.Logs...)
	c.TaskRuns = nil
	for _, tr := range r.TaskRuns {
		t := *tr
		t.States = append([]StateRecord{}, tr.States...)
		c.TaskRuns = append(c.TaskRuns, &t)
	}
	return c
}

// initialStart is the start time of a run's first state: its scheduled
// start for a state that has one (a Paused run given one is a timed pause).
func initialStart(typ string, scheduled time.Time) *time.Time {
	if defaultStart(typ, nil, scheduled) != nil || typ == "Paused" {
		return &scheduled
	}
	return nil
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// serializedState builds a minimal state the server can load.
func serializedState(stateType, message string, start *time.Time) json.RawMessage {
	s := map[string]any{"type": stateType, "message": message, "context": map[string]any{}, "__version__": "1.4.1"}
	if start != nil {
		s["start_time"] = formatTime(*start)
	}
	raw, _ := json.Marshal(s)
	return raw
}

// registerControl adds the REST control API for tests and the demo.
func (e *Emulator) registerControl(mux *http.ServeMux) {
	mux.HandleFunc("GET /emulator/flow-runs", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, e.FlowRuns())
	})
	mux.HandleFunc("POST /emulator/flow-runs", func(w http.ResponseWriter, r *http.Request) {
		var specs []FlowRunSpec
		if err := decodeOneOrMany(r, &specs); err != nil {
			http.Error(w, "body must be a flow run spec or a list of them: "+err.Error(), http.StatusBadRequest)
			return
		}
		var out []FlowRun
		for _, spec := range specs {
			run, err := e.AddFlowRun(spec)
			if err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			out = append(out, run)
		}
		writeJSON(w, http.StatusCreated, out)
	})
	mux.HandleFunc("GET /emulator/flow-runs/{id}", func(w http.ResponseWriter, r *http.Request) {
		run, ok := e.FlowRun(r.PathValue("id"))
		if !ok {
			http.Error(w, "no such flow run", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, run)
	})
	mux.HandleFunc("POST /emulator/flow-runs/{id}/state", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Type, Message string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Type == "" {
			http.Error(w, `body must be {"type": "<state>", "message": "..."}`, http.StatusBadRequest)
			return
		}
		run, err := e.SetFlowRunState(r.PathValue("id"), body.Type, body.Message)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, run)
	})
	mux.HandleFunc("POST /emulator/flow-runs/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Message string }
		if r.ContentLength != 0 {
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				http.Error(w, `body must be empty or {"message": "..."}`, http.StatusBadRequest)
				return
			}
		}
		run, err := e.CancelFlowRun(r.PathValue("id"), body.Message)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, run)
	})
	mux.HandleFunc("PUT /emulator/flow-runs/{id}/labels", func(w http.ResponseWriter, r *http.Request) {
		var labels []string
		if err := json.NewDecoder(r.Body).Decode(&labels); err != nil {
			http.Error(w, `body must be a JSON list of labels, such as ["k8s"]`, http.StatusBadRequest)
			return
		}
		run, err := e.SetFlowRunLabels(r.PathValue("id"), labels)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, run)
	})
	mux.HandleFunc("DELETE /emulator/agents/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := e.DeleteAgent(r.PathValue("id")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /emulator/graphql/restart", func(w http.ResponseWriter, _ *http.Request) {
		e.RestartGraphQL()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /emulator/task-runs/{id}/state", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Type, Message string
			StartTime     time.Time `json:"start_time"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Type == "" {
			http.Error(w, `body must be {"type": "<state>", "message": "...", "start_time": "<RFC 3339, optional>"}`, http.StatusBadRequest)
			return
		}
		tr, err := e.SetTaskRunState(r.PathValue("id"), body.Type, body.Message, body.StartTime)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, tr)
	})
	mux.HandleFunc("POST /emulator/refuse-connections", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Seconds float64 `json:"seconds"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Seconds <= 0 {
			http.Error(w, `body must be {"seconds": <how long>}`, http.StatusBadRequest)
			return
		}
		e.RefuseConnections(time.Duration(body.Seconds * float64(time.Second)))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /emulator/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, e.InjectedFaults())
	})
	mux.HandleFunc("GET /emulator/agents", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, e.Agents())
	})
	mux.HandleFunc("PUT /emulator/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e.SetFaults(f)
		w.WriteHeader(http.StatusNoContent)
	})
}

// decodeOneOrMany reads either one JSON object or an array of them.
func decodeOneOrMany(r *http.Request, out *[]FlowRunSpec) error {
	var raw json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
		return err
	}
	if len(raw) > 0 && raw[0] == '[' {
		return json.Unmarshal(raw, out)
	}
	var one FlowRunSpec
	if err := json.Unmarshal(raw, &one); err != nil {
		return err
	}
	*out = []FlowRunSpec{one}
	return nil
}

// towelJSON is Lazarus's and the zombie killer's configuration in the control
// API, with durations as Go duration text ("60s", "10m").
type towelJSON struct {
	Off          bool   `json:"off"`
	Period       string `json:"period,omitempty"`
	Cutoff       string `json:"cutoff,omitempty"`
	AttemptLimit int    `json:"attempt_limit,omitempty"`
}

func (t towelJSON) durations() (period, cutoff time.Duration, err error) {
	for _, f := range []struct {
		text string
		into *time.Duration
	}{{t.Period, &period}, {t.Cutoff, &cutoff}} {
		if f.text == "" {
			continue
		}
		if *f.into, err = time.ParseDuration(f.text); err != nil {
			return 0, 0, fmt.Errorf(`period and cutoff are durations such as "60s" or "10m": %w`, err)
		}
	}
	return period, cutoff, nil
}

// registerTowelControl adds the control API of Lazarus and the zombie killer.
func (e *Emulator) registerTowelControl(mux *http.ServeMux) {
	mux.HandleFunc("GET /emulator/towel", func(w http.ResponseWriter, _ *http.Request) {
		l, z := e.Towel()
		writeJSON(w, http.StatusOK, map[string]towelJSON{
			"lazarus":       {Off: l.Off, Period: l.Period.String(), Cutoff: l.Cutoff.String(), AttemptLimit: l.AttemptLimit},
			"zombie_killer": {Off: z.Off, Period: z.Period.String(), Cutoff: z.Cutoff.String()},
		})
	})
	mux.HandleFunc("PUT /emulator/towel/lazarus", func(w http.ResponseWriter, r *http.Request) {
		var body towelJSON
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `body must be {"period": "10m", "cutoff": "10m", "attempt_limit": 3, "off": false} (omitted fields take Server's defaults)`, http.StatusBadRequest)
			return
		}
		period, cutoff, err := body.durations()
		if err == nil {
			err = e.SetLazarus(Lazarus{Off: body.Off, Period: period, Cutoff: cutoff, AttemptLimit: body.AttemptLimit})
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /emulator/towel/zombie-killer", func(w http.ResponseWriter, r *http.Request) {
		var body towelJSON
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `body must be {"period": "2m", "cutoff": "10m", "off": false} (omitted fields take Server's defaults)`, http.StatusBadRequest)
			return
		}
		period, cutoff, err := body.durations()
		if err == nil {
			err = e.SetZombieKiller(ZombieKiller{Off: body.Off, Period: period, Cutoff: cutoff})
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /emulator/towel/lazarus/run", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"rescheduled": e.RunLazarus()})
	})
	mux.HandleFunc("POST /emulator/towel/zombie-killer/run", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"handled": e.RunZombieKiller()})
	})
}
