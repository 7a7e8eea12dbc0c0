package agent

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestPokeIsPostAndProfilingIsLoopbackOnly checks the methods and clients the
// agent's HTTP server accepts: /api/poke wakes the loop on POST only, and
// /debug/pprof answers only requests from the pod itself.
func TestPokeIsPostAndProfilingIsLoopbackOnly(t *testing.T) {
	a := &Agent{cfg: Config{Now: time.Now, Intervals: DefaultIntervals, Profiling: true}, metrics: newMetrics(), wake: make(chan struct{}, 1)}
	base := startHealthServer(t, a)

	if code, _ := httpAnswer(t, http.MethodGet, base+"/api/poke"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /api/poke: %d, want 405", code)
	}
	select {
	case <-a.wake:
		t.Fatal("GET /api/poke woke the loop")
	default:
	}
	if code, _ := httpAnswer(t, http.MethodPost, base+"/api/poke"); code != http.StatusOK {
		t.Fatalf("POST /api/poke: %d, want 200", code)
	}
	select {
	case <-a.wake:
	default:
		t.Fatal("POST /api/poke did not wake the loop")
	}

	if code, _ := httpAnswer(t, http.MethodGet, base+"/debug/pprof/"); code != http.StatusOK {
		t.Fatalf("/debug/pprof/ from loopback: %d, want 200", code)
	}
	for _, remote := range []string{"10.1.2.3:40000", "[fd00::1]:40000", "192.0.2.7:1234"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil)
		req.RemoteAddr = remote
		loopbackOnly(http.NotFoundHandler()).ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("/debug/pprof/ from %s: %d, want 403", remote, rec.Code)
		}
	}
}
