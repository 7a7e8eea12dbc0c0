package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
)

// TestExactlyOnceThroughGatewayErrors: 20% of Prefect requests are answered
// as Server's gateway answers when the service behind it is down (HTTP 200,
// INTERNAL_SERVER_ERROR naming the failed fetch), half of them after the
// request was applied. Over 300 runs, some of which cannot be built: every
// run ends exactly once, every Submitted run's log names its Job, and every
// failed run's log has its ERROR line: no line or report lost.
func TestExactlyOnceThroughGatewayErrors(t *testing.T) {
	e := newFaultEnv(t, emulator.Config{Faults: &emulator.Faults{GatewayErrorRate: 0.2, GatewayErrorApplyShare: 0.5, Seed: 17}})
	var bad []string
	n := 0
	ids := e.scheduleMany(300, func() emulator.FlowRunSpec {
		n++
		if n%30 == 0 { // a run config the agent cannot build a Job from
			return emulator.FlowRunSpec{RunConfig: runConfig(t, map[string]any{"type": "DockerRun"})}
		}
		return suspendedRun(t)
	})
	for i, id := range ids {
		if (i+1)%30 == 0 {
			bad = append(bad, id)
		}
	}
	began := time.Now()
	ra := e.start("", faultAgent)
	got := e.waitExactlyOnce(ids, 3*time.Minute, e.ns)
	ra.alive(t)
	if got.failed != len(bad) || got.submitted != len(ids)-len(bad) {
		t.Fatalf("%s: want %d Failed (the unbuildable runs) and the rest Submitted", got, len(bad))
	}
	eventually(t, "every run's log line", func() bool {
		for _, id := range ids {
			run, _ := e.em.FlowRun(id)
			switch run.State {
			case "Submitted":
				if !contains(logsAt(run, "INFO"), "Submitted for execution: Job ") {
					return false
				}
			case "Failed":
				if !contains(logsAt(run, "ERROR"), "Cannot build a Kubernetes Job") {
					return false
				}
			}
		}
		return true
	})
	faults := e.em.InjectedFaults()
	t.Logf("gateway errors: %s in %s; faults injected %v; marks found applied by the read back: %d",
		got, time.Since(began).Round(100*time.Millisecond), faults, strings.Count(ra.logs.String(), "The Submitted mark was applied although its answer was lost"))
	if faults["gateway-error"] == 0 {
		t.Fatalf("no gateway error injected: %v", faults)
	}
}
