// Package emulator is an in-memory Prefect 1 backend for tests and the demo.
//
// It serves the GraphQL API the agent talks to, validates every request against
// the project's copy of the Prefect schema (answering HTTP 400 with a GraphQL
// errors array, as the real gateway does), and keeps the semantics the agent
// depends on: tenants, agent registration, the run queue and its label rule,
// state versions, the double-submission guard, logs, Cloud authentication and
// version locking. A small REST control API under /emulator/ lets tests and the
// demo schedule runs and read back their states and logs.
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
}

// Emulator is an in-memory Prefect 1 API.
type Emulator struct {
	schema  *ast.Schema
	backend Backend
	apiKeys map[string]string
	now     func() time.Time
	faults  faultInjector

	mu       sync.Mutex
	tenants  []Tenant
	agents   map[string]*Agent
	runs     map[string]*FlowRun
	order    []string
	taskRuns map[string]*TaskRun
	requests map[string]int
	runner   runnerState // the flow runner's rows (runner_flows.go)
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
	return e, nil
}

// Handler serves the GraphQL API at / and /graphql, and the control API under /emulator/.
func (e *Emulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", e.serveGraphQL)
	mux.HandleFunc("POST /graphql", e.serveGraphQL)
	e.registerControl(mux)
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
