package emulator

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// What Prefect's own flow runner (1.4.1, `prefect execute flow-run`) needs
// besides the agent's operations: registered flows with their tasks, the task
// runs Server creates for them, mapped children, task run names and each
// run's context. The rows live beside the emulator's own in runnerState.

// RegisteredTask is a task of a registered flow: a row of Server's task table.
type RegisteredTask struct {
	ID       string `json:"id"`
	Slug     string `json:"slug"`
	Name     string `json:"name"`
	CacheKey string `json:"cache_key,omitempty"`
}

// RegisteredFlow is a flow registered from its serialized form.
type RegisteredFlow struct {
	Flow
	TenantID  string           `json:"tenant_id"`
	RunConfig json.RawMessage  `json:"run_config,omitempty"`
	Settings  json.RawMessage  `json:"settings,omitempty"`
	Tasks     []RegisteredTask `json:"tasks"`
}

// runnerState holds the runner's rows; the emulator's lock guards it.
type runnerState struct {
	flows map[string]*RegisteredFlow
	// taskOfRun maps a task run id to its task; mapIndex holds the map index
	// of task runs that have one other than -1 (mapped children).
	taskOfRun map[string]*RegisteredTask
	mapIndex  map[string]int
	names     map[string]string
	contexts  map[string]json.RawMessage
}

func (s *runnerState) init() {
	if s.flows == nil {
		s.flows = map[string]*RegisteredFlow{}
		s.taskOfRun = map[string]*RegisteredTask{}
		s.mapIndex = map[string]int{}
		s.names = map[string]string{}
		s.contexts = map[string]json.RawMessage{}
	}
}

// serializedFlow is the part of Prefect's FlowSchema output that Server keeps
// (src/prefect_server/api/flows.py, create_flow).
type serializedFlow struct {
	Name      string          `json:"name"`
	Version   string          `json:"__version__"`
	Storage   json.RawMessage `json:"storage"`
	RunConfig json.RawMessage `json:"run_config"`
	Tasks     []struct {
		Slug     string  `json:"slug"`
		Name     string  `json:"name"`
		CacheKey *string `json:"cache_key"`
	} `json:"tasks"`
}

// RegisterFlow adds a flow from its serialized form (Flow.serialize(), as
// `prefect register` sends it), as Server's create_flow does
// (src/prefect_server/api/flows.py): a new flow id, one task row per task
// with a new id, keyed by slug, and the flow's storage and run config kept.
// An empty tenant is the first tenant.
func (e *Emulator) RegisterFlow(serialized json.RawMessage, tenantID string) (RegisteredFlow, error) {
	var sf serializedFlow
	if err := json.Unmarshal(serialized, &sf); err != nil {
		return RegisteredFlow{}, fmt.Errorf("the flow is not a serialized Prefect flow: %w", err)
	}
	if sf.Name == "" {
		return RegisteredFlow{}, fmt.Errorf("the serialized flow has no name")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runner.init()
	if tenantID == "" {
		tenantID = e.tenants[0].ID
	}
	if !e.hasTenant(tenantID) {
		return RegisteredFlow{}, fmt.Errorf("unknown tenant %q", tenantID)
	}
	version := 1
	for _, f := range e.runner.flows {
		if f.Name == sf.Name && f.TenantID == tenantID && f.Version >= version {
			version = f.Version + 1
		}
	}
	core := sf.Version
	if core == "" {
		core = "1.4.1"
	}
	f := &RegisteredFlow{
		Flow:     Flow{ID: newID(), Name: sf.Name, Version: version, CoreVersion: core, Storage: sf.Storage},
		TenantID: tenantID, RunConfig: sf.RunConfig, Settings: json.RawMessage(`{}`),
	}
	seen := map[string]bool{}
	for _, t := range sf.Tasks {
		if t.Slug == "" || seen[t.Slug] {
			return RegisteredFlow{}, fmt.Errorf("task %q of flow %q has no slug or a slug used twice (%q)", t.Name, sf.Name, t.Slug)
		}
		seen[t.Slug] = true
		rt := RegisteredTask{ID: newID(), Slug: t.Slug, Name: t.Name}
		if t.CacheKey != nil {
			rt.CacheKey = *t.CacheKey
		}
		f.Tasks = append(f.Tasks, rt)
	}
	sort.Slice(f.Tasks, func(i, j int) bool { return f.Tasks[i].Slug < f.Tasks[j].Slug })
	e.runner.flows[f.ID] = f
	return *f, nil
}

// RunOfFlow describes a run of a registered flow, as create_flow_run takes it.
type RunOfFlow struct {
	FlowID             string          `json:"flow_id"`
	Name               string          `json:"name,omitempty"`
	Labels             []string        `json:"labels,omitempty"`
	RunConfig          json.RawMessage `json:"run_config,omitempty"`
	Parameters         json.RawMessage `json:"parameters,omitempty"`
	Context            json.RawMessage `json:"context,omitempty"`
	ScheduledStartTime time.Time       `json:"scheduled_start_time,omitzero"`
}

// CreateFlowRun schedules a run of a registered flow as Server's
// create_flow_run does (src/prefect_server/api/runs.py): labels given, else
// the run config's, else the flow's run config's; the run config given, else
// the flow's; a Scheduled state "Flow run scheduled.". The database trigger
// insert_task_runs_after_flow_run_insert
// (services/postgres/alembic/versions/2020-06-24T092037_initial_database_migration.py)
// then adds one task run per task of the flow, map index -1, version 0, in
// Pending "Task run created".
func (e *Emulator) CreateFlowRun(spec RunOfFlow) (FlowRun, error) {
	e.mu.Lock()
	e.runner.init()
	f, ok := e.runner.flows[spec.FlowID]
	if !ok {
		e.mu.Unlock()
		return FlowRun{}, fmt.Errorf("Flow %s not found", spec.FlowID)
	}
	flow := *f
	e.mu.Unlock()

	runConfig := spec.RunConfig
	if len(runConfig) == 0 || string(runConfig) == "null" {
		runConfig = flow.RunConfig
	}
	labels := spec.Labels
	if labels == nil {
		labels = runConfigLabels(runConfig)
	}
	fs := FlowRunSpec{
		TenantID: flow.TenantID, Name: spec.Name, Flow: flow.Flow, Labels: labels,
		RunConfig: runConfig, Parameters: spec.Parameters, ScheduledStartTime: spec.ScheduledStartTime,
	}
	for _, t := range flow.Tasks {
		fs.TaskRuns = append(fs.TaskRuns, TaskRunSpec{TaskID: t.ID, State: "Pending"})
	}
	run, err := e.AddFlowRun(fs)
	if err != nil {
		return FlowRun{}, err
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.runs[run.ID]
	created := json.RawMessage(`{"type": "Pending", "message": "Task run created"}`)
	byID := map[string]*RegisteredTask{}
	for i := range f.Tasks {
		byID[f.Tasks[i].ID] = &f.Tasks[i]
	}
	for _, tr := range r.TaskRuns {
		tr.Version = 0
		tr.SerializedState = created
		tr.StateStartTime = time.Time{}
		tr.States = []StateRecord{{ID: newID(), Type: "Pending", Message: "Task run created", Version: 0, Timestamp: e.now(), State: created}}
		e.runner.taskOfRun[tr.ID] = byID[tr.TaskID]
	}
	if len(spec.Context) > 0 {
		e.runner.contexts[r.ID] = spec.Context
	}
	return r.snapshot(), nil
}

// runConfigLabels is a run config's labels, none when it has none.
func runConfigLabels(rc json.RawMessage) []string {
	var v struct {
		Labels []string `json:"labels"`
	}
	if len(rc) == 0 || json.Unmarshal(rc, &v) != nil {
		return []string{}
	}
	if v.Labels == nil {
		return []string{}
	}
	return v.Labels
}

// TaskRunDetails is what the runner's rows add to a task run.
type TaskRunDetails struct {
	TaskSlug string `json:"task_slug"`
	MapIndex int    `json:"map_index"`
	Name     string `json:"name,omitempty"`
}

// TaskRunDetails returns the task slug, map index and name of a task run.
func (e *Emulator) TaskRunDetails(taskRunID string) (TaskRunDetails, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runner.init()
	t, ok := e.runner.taskOfRun[taskRunID]
	if !ok {
		return TaskRunDetails{}, false
	}
	return TaskRunDetails{TaskSlug: t.Slug, MapIndex: e.runner.mapIndexOf(taskRunID), Name: e.runner.names[taskRunID]}, true
}

func (s *runnerState) mapIndexOf(taskRunID string) int {
	if i, ok := s.mapIndex[taskRunID]; ok {
		return i
	}
	return -1
}

// MoveTaskRunStart changes the start time of a task run's current state
// (a Retrying or Scheduled one) in place, keeping the rest of the state: a
// test's stand-in for waiting until a far-off retry falls due.
func (e *Emulator) MoveTaskRunStart(taskRunID string, start time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	tr, ok := e.taskRuns[taskRunID]
	if !ok {
		return fmt.Errorf("no task run %s", taskRunID)
	}
	var state map[string]any
	if err := json.Unmarshal(tr.SerializedState, &state); err != nil {
		return err
	}
	if _, has := state["start_time"]; !has {
		return fmt.Errorf("task run %s is %s, a state without a start time", taskRunID, tr.State)
	}
	state["start_time"] = formatTime(start)
	raw, err := json.Marshal(state)
	if err != nil {
		return err
	}
	tr.SerializedState, tr.StateStartTime = raw, start
	if n := len(tr.States); n > 0 {
		tr.States[n-1].State, tr.States[n-1].StartTime = raw, &start
	}
	return nil
}
