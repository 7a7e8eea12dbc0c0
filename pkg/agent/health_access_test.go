package agent

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestHealthFailsWhileAWatchIsRefused: a watch refused for lack of a verb
// makes /api/health answer 503 naming the verb, until the verb works.
func TestHealthFailsWhileAWatchIsRefused(t *testing.T) {
	a := &Agent{cfg: Config{Now: time.Now, Intervals: DefaultIntervals}, metrics: newMetrics()}
	a.lastLoop.Store(time.Now().UnixNano())
	base := startHealthServer(t, a)
	get := func() (int, string) { return httpAnswer(t, http.MethodGet, base+"/api/health") }
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New(`User "system:serviceaccount:flows:agent" cannot watch resource "pods"`))
	a.access.Observe("pods", "list", nil)
	a.access.Observe("pods", "watch", forbidden)
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "may not watch pods") || !strings.Contains(body, "--rbac") {
		t.Fatalf("refused watch: %d %s", code, body)
	}
	a.access.Observe("pods", "list", nil) // a relist alone does not clear it
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("after a relist: %d, want 503", code)
	}
	a.access.Observe("pods", "watch", nil)
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("granted: %d %s", code, body)
	}
}
