package agent

import (
	"net"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.cfg.HealthAddress = ln.Addr().String()
	ln.Close()
	stop, err := a.serveHealth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	base := "http://" + a.cfg.HealthAddress

	resp, err := http.Get(base + "/api/poke")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /api/poke: %d, want 405", resp.StatusCode)
	}
	select {
	case <-a.wake:
		t.Fatal("GET /api/poke woke the loop")
	default:
	}
	resp, err = http.Post(base+"/api/poke", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/poke: %d, want 200", resp.StatusCode)
	}
	select {
	case <-a.wake:
	default:
		t.Fatal("POST /api/poke did not wake the loop")
	}

	resp, err = http.Get(base + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/debug/pprof/ from loopback: %d, want 200", resp.StatusCode)
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
