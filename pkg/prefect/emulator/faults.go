package emulator

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Faults makes a share of GraphQL requests fail, for reliability tests. Each
// rate is a probability between 0 and 1, drawn independently per request.
type Faults struct {
	ServerErrorRate float64       `json:"server_error_rate"` // HTTP 503
	RateLimitRate   float64       `json:"rate_limit_rate"`   // HTTP 429
	DelayRate       float64       `json:"delay_rate"`        // answered after Delay
	Delay           time.Duration `json:"delay"`
	Seed            uint64        `json:"seed"`
}

type faultInjector struct {
	mu     sync.Mutex
	faults Faults
	rng    *rand.Rand
	counts map[string]int
}

// SetFaults replaces the fault configuration; the zero value turns faults off.
func (e *Emulator) SetFaults(f Faults) {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.faults = f
	e.faults.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
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

// inject answers the request with a fault when one is drawn; it reports whether it did.
func (f *faultInjector) inject(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	if f.rng == nil {
		f.mu.Unlock()
		return false
	}
	kind := ""
	switch {
	case f.rng.Float64() < f.faults.ServerErrorRate:
		kind = "5xx"
	case f.rng.Float64() < f.faults.RateLimitRate:
		kind = "429"
	case f.rng.Float64() < f.faults.DelayRate:
		kind = "delay"
	}
	delay := f.faults.Delay
	if kind != "" {
		if f.counts == nil {
			f.counts = map[string]int{}
		}
		f.counts[kind]++
	}
	f.mu.Unlock()
	switch kind {
	case "5xx":
		http.Error(w, "upstream unavailable (injected by the emulator)", http.StatusServiceUnavailable)
		return true
	case "429":
		w.Header().Set("Retry-After", "1")
		http.Error(w, "rate limited (injected by the emulator)", http.StatusTooManyRequests)
		return true
	case "delay":
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return true
		}
	}
	return false
}
