package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// The agent's two Kubernetes probes, served from the start of Run:
//
//   - /livez: the process's loops are alive. The connection loop and the
//     poll loop each record every turn; a loop waiting on the Prefect API
//     (a back-off, a long Retry-After) is alive for as long as the client
//     may keep one call going. It fails only when a loop is stuck, which a
//     restart mends.
//   - /readyz: connected to Prefect, permitted by Kubernetes, and polling:
//     503 with the reason while connecting, while a watch is refused for
//     lack of a verb, or while polls fail. A standby replica waiting for
//     the leader Lease is ready (a rollout must be able to proceed).
//
// /api/health keeps its meaning for installations made before: alive and
// permitted.

// callStallAfter is how long one call to the Prefect API may go on before
// the loop waiting on it counts as stuck: the client's tries with Retry-After
// waits of up to 5 min each.
const callStallAfter = 40 * time.Minute

// probeState is what the probes read.
type probeState struct {
	mu sync.Mutex
	// connected is set once the agent registered.
	connected bool
	// problem is why the agent is not ready beyond permissions ("" when
	// none), since when.
	problem      string
	problemSince time.Time
	// callSince is when the loop's current call to the Prefect API began
	// (zero between calls).
	callSince time.Time
}

// calling records that the loop begins (true) or ends a call to the API.
func (p *probeState) calling(now time.Time, busy bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if busy {
		p.callSince = now
	} else {
		p.callSince = time.Time{}
	}
}

// report records a loop's outcome: err nil clears the problem.
func (p *probeState) report(now time.Time, connected bool, what string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.connected = p.connected || connected
	if err == nil {
		p.problem = ""
		return
	}
	if p.problem == "" {
		p.problemSince = now
	}
	p.problem = fmt.Sprintf("%s: %v", what, err)
}

// alive tells whether the loops are turning, with the reason when not.
func (a *Agent) alive() (bool, string) {
	if a.standby.Load() {
		return true, ""
	}
	now := a.cfg.Now()
	a.probe.mu.Lock()
	since := a.probe.callSince
	a.probe.mu.Unlock()
	if !since.IsZero() && now.Sub(since) < callStallAfter {
		return true, ""
	}
	last := time.Unix(0, a.lastLoop.Load())
	if now.Sub(last) > stallAfter+a.cfg.Intervals[len(a.cfg.Intervals)-1] {
		return false, "no poll since " + last.UTC().Format(time.RFC3339)
	}
	return true, ""
}

// ready tells whether the agent is connected, permitted and polling, with
// the reason when not.
func (a *Agent) ready() (bool, string) {
	if problem := a.access.message(); problem != "" {
		return false, problem
	}
	a.probe.mu.Lock()
	defer a.probe.mu.Unlock()
	switch {
	case a.probe.problem != "":
		return false, fmt.Sprintf("%s (since %s)", a.probe.problem, a.probe.problemSince.UTC().Format(time.RFC3339))
	case !a.probe.connected:
		return false, "connecting to the Prefect API"
	}
	return true, ""
}

// probeHandlers adds /livez and /readyz to the agent's HTTP server.
func (a *Agent) probeHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := a.alive()
		writeProbe(w, ok, why)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := a.ready()
		if ok {
			if ok, why = a.alive(); !ok {
				why = "not alive: " + why
			}
		}
		writeProbe(w, ok, why)
	})
}

func writeProbe(w http.ResponseWriter, ok bool, why string) {
	w.Header().Set("Content-Type", "application/json")
	if ok {
		fmt.Fprint(w, "{}")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	msg, _ := json.Marshal(map[string]string{"error": why})
	_, _ = w.Write(msg)
}
