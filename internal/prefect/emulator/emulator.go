// Package emulator is an in-memory Prefect 1 backend for tests and the demo.
//
// It serves the GraphQL API the agent talks to, validates every request against
// the project's copy of the Prefect schema (answering HTTP 400 with a GraphQL
// errors array, as the real gateway does), and follows Prefect Server
// (PrefectHQ/server at its last release) by default; file names below are
// under its src/prefect_server/:
//
//   - set_flow_run_states: api/states.py set_flow_run_state. A Submitted state
//     takes a 30 s lock on the run id in the memory of the GraphQL replica
//     that serves the request (utilities/collections.py ExpiringSet) before
//     anything is written, and is refused while that replica holds it; nothing
//     else refuses it, whatever the run's state. Requests are spread over
//     Config.Replicas replicas in turn. version is ignored; the new state's
//     version is the stored one + 1. A Cancelled state cancels the unfinished
//     task runs. The heartbeat moves on Submitted, Running and Cancelling.
//     agent_id is set only when the agent exists (api/runs.py
//     update_flow_run_agent).
//   - set_task_run_states: api/states.py set_task_run_state. No lock; version
//     ignored; Running needs a Running flow run; the heartbeat moves on Running.
//   - Every state is kept as a flow_run_state or task_run_state row, served
//     through flow_run.states and task_run.states with Hasura's where,
//     order_by (asc puts NULLs last), limit and offset. state_start_time is
//     NULL for states without a start time (migration 2020-09-02T203435);
//     Scheduled, Resume, Retrying and Queued default to now, as Prefect's.
//   - get_runs_in_queue: api/runs.py. The 75 due runs oldest by
//     state_start_time (NULLs last), then the label rule, then 25.
//   - update_flow_run_heartbeat, update_task_run_heartbeat: graphql/runs.py
//     and api/runs.py; success even for an unknown id.
//   - Lazarus and the zombie killer: services/towel/lazarus.py and
//     zombie_killer.py, run from New until Close on Server's periods,
//     cutoffs and attempt limit unless Config says otherwise.
//   - cancel_flow_run (the control API's cancel): api/states.py
//     cancel_flow_run. Deleting an agent clears agent_id on its runs.
//   - register_agent, tenants, logs and the "already submitted" wording as
//     api/agents.py, graphql/states.py and api/logs.py.
//
// The Cloud backend adds API keys and version locking (VERSION_LOCKING_ERROR)
// and otherwise behaves as Server.
//
// Where it differs from Server, knowingly:
//   - Each GraphQL operation runs whole under one lock, so two concurrent
//     state writes get the same version (Server reads the version before the
//     insert, api/states.py line 97, and can give both V+1) only with
//     Config.StateInsertDelay; the state rows' timestamps come from one
//     clock, not each replica's.
//   - Requests are spread per request, where a Kubernetes Service spreads
//     connections.
//   - A set_*_run_states request with several states stops at the first
//     that fails; Server (graphql/states.py, asyncio.gather) still applies
//     the others while it answers the first error.
//   - Hasura gives rows in no promised order without order_by; the emulator
//     gives insertion order. An order_by object naming several columns is
//     refused (pass a list of one-column objects); Hasura follows its keys.
//   - The towel loops time their periods with the wall clock while their
//     cutoffs use Config.Now; flow_run.updated, which orders Lazarus's pass,
//     is approximated by the later of the state timestamp and the heartbeat.
//   - Only the columns and comparisons the project's schema copy declares
//     are served; others answer "not implemented".
//   - Serialized states are stored as sent (Server re-serializes them through
//     Prefect's StateSchema, adding its own __version__); a state built
//     without a start time gets it in the state row but not in its JSON.
//   - Flow group settings are two flags on Flow (HeartbeatDisabled,
//     LazarusDisabled).
//   - The control API's SetFlowRunState writes as a client would but takes no
//     Submitted lock.
//
// A small REST control API under /emulator/ lets tests and the demo schedule
// runs, cancel them, read back their states and logs, delete agents, restart
// the GraphQL replicas, configure and run Lazarus and the zombie killer, and
// inject faults.
package emulator

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Backend is the kind of Prefect backend emulated.
type Backend string

const (
	// Server is open-source Prefect Server: no authentication, no version locking.
	Server Backend = "server"
	// Cloud is Prefect Cloud 1: API keys and version locking.
	Cloud Backend = "cloud"
)

// Config sets up an emulator.
type Config struct {
	Backend Backend
	// APIKeys maps each accepted API key to its tenant id (Cloud only).
	APIKeys map[string]string
	// Tenants to create; one named "default" is created when empty.
	Tenants []Tenant
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Faults, when set, are injected from the start (see SetFaults).
	Faults *Faults
	// Replicas is the number of GraphQL processes requests are spread over,
	// each with its own Submitted lock; 1 when zero.
	Replicas int
	// SubmittedLock is how long a replica refuses a second Submitted state
	// for a run; DefaultSubmittedLock (Server's 30 s) when zero.
	SubmittedLock time.Duration
	// StateInsertDelay, when set, is the time between reading a run's
	// version and inserting its new state in set_flow_run_states and
	// set_task_run_states, during which other requests are served: two
	// writes in that gap get the same version, as on Server. Zero keeps
	// each write whole.
	StateInsertDelay time.Duration
	// Lazarus and ZombieKiller configure Server's towel services, which run
	// from New until Close; zero fields take Server's defaults.
	Lazarus      Lazarus
	ZombieKiller ZombieKiller
}

// Emulator is an in-memory Prefect 1 API.
type Emulator struct {
	schema  *ast.Schema
	backend Backend
	apiKeys map[string]string
	now     func() time.Time
	faults  faultInjector

	submittedLock time.Duration
	insertDelay   time.Duration
	towel         towel

	mu          sync.Mutex
	replicas    []*replica
	nextReplica int
	tenants     []Tenant
	agents      map[string]*Agent
	runs        map[string]*FlowRun
	order       []string
	taskRuns    map[string]*TaskRun
	requests    map[string]int
	runner      runnerState // the flow runner's rows (runner_flows.go)
}

// New returns an emulator with the given configuration.
func New(cfg Config) (*Emulator, error) {
	schema, err := gqlparser.LoadSchema(&ast.Source{Name: "schema.graphql", Input: prefect.Schema})
	if err != nil {
		return nil, fmt.Errorf("loading the Prefect schema: %w", err)
	}
	if cfg.Backend == "" {
		cfg.Backend = Server
	}
	if cfg.Backend != Server && cfg.Backend != Cloud {
		return nil, fmt.Errorf("unknown backend %q: use %q or %q", cfg.Backend, Server, Cloud)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Replicas < 0 {
		return nil, fmt.Errorf("replicas must be at least 1, got %d", cfg.Replicas)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.SubmittedLock < 0 {
		return nil, fmt.Errorf("the Submitted lock must be a positive duration, got %s", cfg.SubmittedLock)
	}
	if cfg.SubmittedLock == 0 {
		cfg.SubmittedLock = DefaultSubmittedLock
	}
	e := &Emulator{
		schema:   schema,
		backend:  cfg.Backend,
		apiKeys:  cfg.APIKeys,
		now:      cfg.Now,
		tenants:  cfg.Tenants,
		agents:   map[string]*Agent{},
		runs:     map[string]*FlowRun{},
		taskRuns: map[string]*TaskRun{},
		requests: map[string]int{},

		submittedLock: cfg.SubmittedLock,
		insertDelay:   cfg.StateInsertDelay,
	}
	for range cfg.Replicas {
		e.replicas = append(e.replicas, &replica{locks: map[string]time.Time{}})
	}
	if len(e.tenants) == 0 {
		e.tenants = []Tenant{{ID: newID(), Name: "default", Slug: "default"}}
	}
	if cfg.Faults != nil {
		e.SetFaults(*cfg.Faults)
	}
	for key, tenant := range e.apiKeys {
		if !e.hasTenant(tenant) {
			return nil, fmt.Errorf("API key %s… belongs to unknown tenant %q", mask(key), tenant)
		}
	}
	if err := cfg.Lazarus.validate(); err != nil {
		return nil, err
	}
	if err := cfg.ZombieKiller.validate(); err != nil {
		return nil, err
	}
	e.startTowel(cfg.Lazarus, cfg.ZombieKiller)
	return e, nil
}

// Handler serves the GraphQL API at / and /graphql, and the control API under /emulator/.
func (e *Emulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", e.serveGraphQL)
	mux.HandleFunc("POST /graphql", e.serveGraphQL)
	e.registerControl(mux)
	e.registerTowelControl(mux)
	e.registerRunnerControl(mux)
	return mux
}

// DefaultTenant is the first tenant, the one Server agents pick.
func (e *Emulator) DefaultTenant() Tenant {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tenants[0]
}

func (e *Emulator) hasTenant(id string) bool {
	for _, t := range e.tenants {
		if t.ID == id {
			return true
		}
	}
	return false
}

// newID returns a random version 4 UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func mask(key string) string {
	if len(key) <= 4 {
		return "****"
	}
	return key[:4]
}
