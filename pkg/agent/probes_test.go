package agent

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestProbesTellAliveFromReady drives /livez and /readyz with a fake clock
// through a start against an unreachable API, a long call, failing polls and
// a refused watch: alive all along while the loops turn or wait on the API,
// ready only when connected, permitted and polling.
func TestProbesTellAliveFromReady(t *testing.T) {
	start := time.Now()
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	a := &Agent{cfg: Config{Now: now, Intervals: DefaultIntervals}, metrics: newMetrics()}
	a.lastLoop.Store(start.UnixNano())
	base := startHealthServer(t, a)
	check := func(step, path string, wantCode int, wantIn string) {
		t.Helper()
		code, body := httpAnswer(t, http.MethodGet, base+path)
		if code != wantCode || !strings.Contains(body, wantIn) {
			t.Fatalf("%s: %s answered %d %s, want %d with %q", step, path, code, body, wantCode, wantIn)
		}
	}
	check("before connecting", "/livez", http.StatusOK, "{}")
	check("before connecting", "/readyz", http.StatusServiceUnavailable, "connecting to the Prefect API")

	a.probe.report(now(), false, "cannot reach the Prefect API", errors.New("dial tcp 10.0.0.1:4200: connect: connection refused"))
	check("API refusing", "/readyz", http.StatusServiceUnavailable, "connection refused")
	a.probe.calling(now(), true) // a try held by Retry-After answers
	clock.Store(start.Add(20 * time.Minute).UnixNano())
	check("one call waiting 20 min on the API", "/livez", http.StatusOK, "{}")
	check("one call waiting 20 min on the API", "/api/health", http.StatusOK, "{}")
	a.probe.calling(now(), false)
	a.lastLoop.Store(now().UnixNano())
	a.probe.report(now(), true, "cannot reach the Prefect API", nil)
	check("connected", "/readyz", http.StatusOK, "{}")

	a.probe.report(now(), true, "polling the Prefect API fails", errors.New("HTTP 503"))
	check("polls failing", "/readyz", http.StatusServiceUnavailable, "polling the Prefect API fails: HTTP 503")
	check("polls failing", "/livez", http.StatusOK, "{}")
	a.probe.report(now(), true, "polling the Prefect API fails", nil)

	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New(`cannot watch resource "pods"`))
	a.access.Observe("pods", "watch", forbidden)
	check("watch refused", "/readyz", http.StatusServiceUnavailable, "may not watch pods")
	check("watch refused", "/livez", http.StatusOK, "{}")
	a.access.Observe("pods", "watch", nil)
	check("watch granted", "/readyz", http.StatusOK, "{}")

	clock.Store(start.Add(30 * time.Minute).UnixNano()) // no turn for 10 min, no call going on
	check("stuck loop", "/livez", http.StatusServiceUnavailable, "no poll since")
	check("stuck loop", "/readyz", http.StatusServiceUnavailable, "not alive")
}
