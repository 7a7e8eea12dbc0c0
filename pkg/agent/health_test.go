package agent

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestHealthFailsOnlyWhenTheLoopStalls drives /api/health with a fake clock:
// a loop that has not polled for over five minutes is unhealthy, a standby
// replica waiting for the leader Lease is not.
func TestHealthFailsOnlyWhenTheLoopStalls(t *testing.T) {
	start := time.Now()
	var clock atomic.Int64 // the handler reads the fake time on its own goroutine
	clock.Store(start.UnixNano())
	a := &Agent{cfg: Config{Now: func() time.Time { return time.Unix(0, clock.Load()) }, Intervals: DefaultIntervals}, metrics: newMetrics()}
	base := startHealthServer(t, a)
	status := func() int {
		code, _ := httpAnswer(t, http.MethodGet, base+"/api/health")
		return code
	}
	a.lastLoop.Store(start.UnixNano())
	if got := status(); got != http.StatusOK {
		t.Fatalf("fresh loop: %d", got)
	}
	clock.Store(start.Add(6 * time.Minute).UnixNano())
	if got := status(); got != http.StatusServiceUnavailable {
		t.Fatalf("stalled loop: %d, want 503", got)
	}
	a.standby.Store(true)
	if got := status(); got != http.StatusOK {
		t.Fatalf("standby replica: %d, want 200", got)
	}
}
