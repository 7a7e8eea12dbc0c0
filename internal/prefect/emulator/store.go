package emulator

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Tenant is a Prefect tenant. In Cloud mode each API key belongs to one.
type Tenant struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Slug string `json:"slug"`
}

// Agent is a registered agent and when it last asked for work.
type Agent struct {
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	Name        string    `json:"name"`
	Type        string    `json:"type"`
	CoreVersion string    `json:"core_version"`
	Labels      []string  `json:"labels"`
	LastQueried time.Time `json:"last_queried,omitzero"`
}

// Flow is the flow a run belongs to; only the columns the agent reads.
type Flow struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Version     int             `json:"version"`
	CoreVersion string          `json:"core_version"`
	Storage     json.RawMessage `json:"storage,omitempty"`
	Environment json.RawMessage `json:"environment,omitempty"`
	// HeartbeatDisabled and LazarusDisabled are the flow group's settings
	// heartbeat_enabled: false and lazarus_enabled: false, which keep
	// Lazarus (and, for heartbeats, the zombie killer) away from its runs.
	HeartbeatDisabled bool `json:"heartbeat_disabled,omitempty"`
	LazarusDisabled   bool `json:"lazarus_disabled,omitempty"`
}

// StateRecord is one state a run went through, in order: a flow_run_state
// or task_run_state row. Server inserts one for every state set and never
// deletes them (src/prefect_server/api/states.py, set_flow_run_state).
type StateRecord struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Message   string    `json:"message"`
	Version   int       `json:"version"`
	Timestamp time.Time `json:"timestamp"`
	// StartTime is the state's start_time; nil for states without one.
	StartTime *time.Time      `json:"start_time,omitempty"`
	State     json.RawMessage `json:"state"`
}

// Log is one run log line written through write_run_logs.
type Log struct {
	FlowRunID string    `json:"flow_run_id"`
	TaskRunID string    `json:"task_run_id,omitempty"`
	Name      string    `json:"name"`
	Level     string    `json:"level"`
	Message   string    `json:"message"`
	Timestamp time.Time `json:"timestamp"`
}

// TaskRun is a task run of a flow run.
type TaskRun struct {
	ID        string `json:"id"`
	TaskID    string `json:"task_id"`
	FlowRunID string `json:"flow_run_id"`
	Name      string `json:"name,omitempty"`
	// MaxRetries and RetryDelay are the task's retry settings, which the
	// zombie killer reads.
	MaxRetries      int             `json:"max_retries,omitempty"`
	RetryDelay      time.Duration   `json:"retry_delay,omitempty"`
	Version         int             `json:"version"`
	State           string          `json:"state"`
	SerializedState json.RawMessage `json:"serialized_state"`
	StateStartTime  time.Time       `json:"state_start_time"`
	// Heartbeat is when a Running state or update_task_run_heartbeat last
	// touched the task run; zero is NULL.
	Heartbeat time.Time     `json:"heartbeat,omitzero"`
	States    []StateRecord `json:"states"`
}

// FlowRun is the emulator's row for a flow run, with its history and logs.
type FlowRun struct {
	ID                 string          `json:"id"`
	TenantID           string          `json:"tenant_id"`
	Name               string          `json:"name"`
	Flow               Flow            `json:"flow"`
	Labels             []string        `json:"labels"`
	RunConfig          json.RawMessage `json:"run_config"`
	Parameters         json.RawMessage `json:"parameters,omitempty"`
	ScheduledStartTime time.Time       `json:"scheduled_start_time"`
	Version            int             `json:"version"`
	State              string          `json:"state"`
	StateMessage       string          `json:"state_message"`
	SerializedState    json.RawMessage `json:"serialized_state"`
	StateStartTime     time.Time       `json:"state_start_time"`
	// StateTimestamp is when the current state was set.
	StateTimestamp time.Time `json:"state_timestamp"`
	// Updated is when the row last changed: Server's trigger update_timestamp
	// (function set_updated_timestamp, initial migration
	// services/postgres/alembic/versions/2020-06-24T092037_initial_database_migration.py
	// lines 42-49 and 502) sets it to the database's NOW() on every UPDATE
	// of flow_run, which a state insert also makes through its trigger; the
	// column has an index (ix_flow_run_updated, line 464). touch keeps it.
	Updated time.Time `json:"updated"`
	// AgentID is the agent that marked the run Submitted last, from its
	// X-PREFECT-AGENT-ID header, as Server records it.
	AgentID string `json:"agent_id,omitempty"`
	// Heartbeat is when a Submitted, Running or Cancelling state or
	// update_flow_run_heartbeat last touched the run; zero is NULL.
	Heartbeat time.Time `json:"heartbeat,omitzero"`
	// TimesResurrected counts Lazarus's reschedules of the run.
	TimesResurrected int           `json:"times_resurrected"`
	States           []StateRecord `json:"states"`
	Logs             []Log         `json:"logs"`
	TaskRuns         []*TaskRun    `json:"task_runs"`
	// agentName and agentLabels are the name and labels of the agent
	// AgentID names, for filters through the flow_run.agent relationship.
	agentName   string
	agentLabels []string
}

// labelsMatch is the server's rule: every run label is an agent label, and an
// unlabelled run goes only to an unlabelled agent.
func labelsMatch(runLabels, agentLabels []string) bool {
	if len(runLabels) == 0 {
		return len(agentLabels) == 0
	}
	have := map[string]bool{}
	for _, l := range agentLabels {
		have[l] = true
	}
	for _, l := range runLabels {
		if !have[l] {
			return false
		}
	}
	return true
}

// agentByID returns the registered agent with this id, or nil.
func (e *Emulator) agentByID(id string) *Agent {
	for _, a := range e.agents {
		if a.ID == id {
			return a
		}
	}
	return nil
}

// queued is the where clause of Server's get_runs_in_queue (api/runs.py
// lines 460-480): a Scheduled-family state whose start time is at or before
// before, or Running with such a task run. A NULL start time is never due.
func (r *FlowRun) queued(before time.Time) bool {
	if prefect.ScheduledFamily(r.State) && due(r.StateStartTime, before) {
		return true
	}
	if r.State == "Running" {
		for _, tr := range r.TaskRuns {
			if prefect.ScheduledFamily(tr.State) && due(tr.StateStartTime, before) {
				return true
			}
		}
	}
	return false
}

func due(start, before time.Time) bool { return !start.IsZero() && !start.After(before) }

func sortedCopy(in []string) []string {
	out := append([]string{}, in...)
	sort.Strings(out)
	return out
}

// agentKey is what the server deduplicates registrations on.
func agentKey(tenant, name, typ, core string, labels []string) string {
	return strings.Join([]string{tenant, name, typ, core, strings.Join(sortedCopy(labels), "\x00")}, "\x01")
}

// stateFields pulls the type, message and start time out of a serialized state.
func stateFields(raw json.RawMessage) (typ, message string, start *time.Time, err error) {
	var s struct {
		Type      string  `json:"type"`
		Message   *string `json:"message"`
		StartTime *string `json:"start_time"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", "", nil, err
	}
	if s.Message != nil {
		message = *s.Message
	}
	if s.StartTime != nil && *s.StartTime != "" {
		t, perr := time.Parse(time.RFC3339Nano, *s.StartTime)
		if perr != nil {
			return "", "", nil, perr
		}
		start = &t
	}
	return s.Type, message, start, nil
}
