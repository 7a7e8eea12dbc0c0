package emulator

import (
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Faults makes a share of GraphQL requests fail, for reliability tests. Each
// rate is a probability between 0 and 1; one fault at most is drawn per
// request, in the order of the fields. The Apply* faults run the request
// first (a mutation is committed) and then fail the answer, as a proxy or a
// lost connection does after the server did its work.
type Faults struct {
	ServerErrorRate float64 `json:"server_error_rate"` // HTTP 503, nothing applied
	RateLimitRate   float64 `json:"rate_limit_rate"`   // HTTP 429 with Retry-After: 1
	// ApplyThenFailRate commits the request, then answers HTTP 503 or 504.
	ApplyThenFailRate float64 `json:"apply_then_fail_rate"`
	// ApplyThenDropRate commits the request, then drops the connection unanswered.
	ApplyThenDropRate float64 `json:"apply_then_drop_rate"`
	// HoldRate holds the request for Hold, then answers 504; HoldApplyShare of
	// the held requests are committed first. Make Hold longer than the
	// client's timeout to see a client timeout.
	HoldRate       float64       `json:"hold_rate"`
	HoldApplyShare float64       `json:"hold_apply_share"`
	Hold           time.Duration `json:"hold"`
	DelayRate      float64       `json:"delay_rate"` // answered after Delay
	Delay          time.Duration `json:"delay"`
	// GatewayErrorRate answers as Server's Apollo gateway does when the
	// GraphQL service or Hasura behind it is unreachable: HTTP 200, each root
	// field null with an INTERNAL_SERVER_ERROR naming the failed upstream
	// request (services/apollo/src/executors.js; node-fetch's wording).
	// GatewayErrorApplyShare of them come after the request was applied.
	GatewayErrorRate       float64 `json:"gateway_error_rate"`
	GatewayErrorApplyShare float64 `json:"gateway_error_apply_share"`
	// Holds keep matching requests for a while, then apply and answer them
	// (counted as "held", then "held-applied" once applied):
	// a slow proxy or a paused connection.
	Holds []Hold `json:"holds,omitempty"`
	Seed  uint64 `json:"seed"`
}

// Hold holds the requests that match every non-empty field for For, then
// serves them as usual.
type Hold struct {
	// Field is a root field of the operation, such as set_flow_run_states.
	Field string `json:"field"`
	// StateType, for set_flow_run_states and set_task_run_states, is a state
	// type one of the request's states has, such as Submitted.
	StateType string `json:"state_type,omitempty"`
	// AgentID is the X-Prefect-Agent-Id header the request carries.
	AgentID string        `json:"agent_id,omitempty"`
	For     time.Duration `json:"for"`
}

// fault kinds, also the keys of InjectedFaults.
const (
	fault5xx         = "5xx"
	fault429         = "429"
	faultApply5xx    = "apply-then-5xx"
	faultApplyDrop   = "apply-then-drop"
	faultHold        = "hold"
	faultApplyHold   = "apply-then-hold"
	faultDelay       = "delay"
	faultRefused     = "refused"
	faultGateway     = "gateway-error"
	faultApplyGate   = "apply-then-gateway-error"
	faultHeld        = "held"
	faultHeldApplied = "held-applied"
	faultNoneDrawn   = ""
	statusTimeout    = http.StatusGatewayTimeout
	statusNoBackend  = http.StatusServiceUnavailable
)

type faultInjector struct {
	mu          sync.Mutex
	faults      Faults
	rng         *rand.Rand
	counts      map[string]int
	refuseUntil time.Time
}

// SetFaults replaces the fault configuration; the zero value turns faults off.
func (e *Emulator) SetFaults(f Faults) {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.faults = f
	e.faults.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
}

// RefuseConnections makes the API refuse connections for d: new connections
// through Listener are reset at once, and requests on open ones are dropped.
func (e *Emulator) RefuseConnections(d time.Duration) {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.refuseUntil = time.Now().Add(d)
}

func (f *faultInjector) refusing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Before(f.refuseUntil)
}

func (f *faultInjector) count(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts == nil {
		f.counts = map[string]int{}
	}
	f.counts[kind]++
}

// InjectedFaults counts the faults injected so far, by kind.
func (e *Emulator) InjectedFaults() map[string]int {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.faults.counts {
		out[k] = v
	}
	return out
}

// draw picks the fault for one request, if any.
func (f *faultInjector) draw() (kind string, hold, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng == nil {
		return faultNoneDrawn, 0, 0
	}
	c := f.faults
	switch {
	case f.rng.Float64() < c.ServerErrorRate:
		kind = fault5xx
	case f.rng.Float64() < c.RateLimitRate:
		kind = fault429
	case f.rng.Float64() < c.ApplyThenFailRate:
		kind = faultApply5xx
	case f.rng.Float64() < c.ApplyThenDropRate:
		kind = faultApplyDrop
	case f.rng.Float64() < c.HoldRate:
		kind = faultHold
		if f.rng.Float64() < c.HoldApplyShare {
			kind = faultApplyHold
		}
	case f.rng.Float64() < c.DelayRate:
		kind = faultDelay
	case f.rng.Float64() < c.GatewayErrorRate:
		kind = faultGateway
		if f.rng.Float64() < c.GatewayErrorApplyShare {
			kind = faultApplyGate
		}
	}
	if kind != faultNoneDrawn {
		if f.counts == nil {
			f.counts = map[string]int{}
		}
		f.counts[kind]++
	}
	return kind, c.Hold, c.Delay
}

// before answers the request with a fault that precedes its execution; it
// reports whether it did. Faults that follow the execution are left to after.
func (f *faultInjector) before(w http.ResponseWriter, r *http.Request, kind string, hold, delay time.Duration) bool {
	switch kind {
	case fault5xx:
		http.Error(w, "upstream unavailable (injected by the emulator)", statusNoBackend)
		return true
	case fault429:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "rate limited (injected by the emulator)", http.StatusTooManyRequests)
		return true
	case faultHold:
		sleep(r, hold)
		http.Error(w, "upstream timed out (injected by the emulator)", statusTimeout)
		return true
	case faultDelay:
		sleep(r, delay)
	}
	return false
}

// after replaces the answer of an executed request with a fault; it reports
// whether it did.
func (f *faultInjector) after(w http.ResponseWriter, r *http.Request, kind string, hold time.Duration) bool {
	switch kind {
	case faultApply5xx:
		status := statusNoBackend
		if time.Now().UnixNano()%2 == 0 {
			status = statusTimeout
		}
		http.Error(w, "upstream failed after the change was applied (injected by the emulator)", status)
		return true
	case faultApplyDrop:
		dropConnection(w)
		return true
	case faultApplyHold:
		sleep(r, hold)
		http.Error(w, "upstream timed out after the change was applied (injected by the emulator)", statusTimeout)
		return true
	}
	return false
}

func sleep(r *http.Request, d time.Duration) {
	select {
	case <-time.After(d):
	case <-r.Context().Done():
	}
}

// dropConnection closes the request's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // a reset, as a crashed proxy gives
	}
	_ = conn.Close()
}

// Listener wraps the listener the emulator is served on so that
// RefuseConnections resets new connections.
func (e *Emulator) Listener(l net.Listener) net.Listener { return refusingListener{l, e} }

type refusingListener struct {
	net.Listener
	e *Emulator
}

func (l refusingListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil || !l.e.faults.refusing() {
			return conn, err
		}
		l.e.faults.count(faultRefused)
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.SetLinger(0)
		}
		_ = conn.Close()
	}
}
