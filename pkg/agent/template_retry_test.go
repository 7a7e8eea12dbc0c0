package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/jobtemplate"
)

// TestTemplateServerOutageFailsNoRun: the server holding the run configs'
// template answers 503 for 30 s. No run fails; each gets one WARNING line
// and stays Scheduled, and every run is submitted with its Job once the
// server answers again.
func TestTemplateServerOutageFailsNoRun(t *testing.T) {
	const outage = 30 * time.Second
	e := newFaultEnv(t, emulator.Config{})
	var down atomic.Bool
	down.Store(true)
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			refused.Add(1)
			http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("apiVersion: batch/v1\nkind: Job\nmetadata: {name: fetched}\nspec: {suspend: true, template: {spec: {containers: [{name: flow}]}}}\n"))
	}))
	t.Cleanup(srv.Close)
	loader, err := jobtemplate.New(jobtemplate.Options{Allowed: []string{srv.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	ids := e.scheduleMany(20, func() emulator.FlowRunSpec {
		return emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "KubernetesRun", "job_template_path": srv.URL + "/job.yaml"})}
	})
	e.start("", func(c *Config) { c.Job.Loader = loader })
	deadline := time.Now().Add(outage)
	for time.Now().Before(deadline) {
		for _, id := range ids {
			if run, _ := e.em.FlowRun(id); run.State != "Scheduled" {
				t.Fatalf("run %s is %s during the template server's outage; log %q", id, run.State, logsAt(run, "ERROR"))
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	down.Store(false)
	back := time.Now()
	got := e.waitExactlyOnce(ids, 45*time.Second, e.ns)
	if got.submitted != len(ids) {
		t.Fatalf("%s: want every run Submitted", got)
	}
	for _, id := range ids {
		run, _ := e.em.FlowRun(id)
		warnings := logsAt(run, "WARNING")
		if len(warnings) != 1 || !strings.Contains(warnings[0], "answered HTTP 503") || len(logsAt(run, "ERROR")) != 0 {
			t.Fatalf("run %s: WARNING lines %q, ERROR lines %q; want one WARNING naming the 503 and no ERROR", id, warnings, logsAt(run, "ERROR"))
		}
	}
	t.Logf("%s; %d template reads refused during the %s outage; all submitted %s after it ended", got, refused.Load(), outage, time.Since(back).Round(100*time.Millisecond))
}
