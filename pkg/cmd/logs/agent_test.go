package logs

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// prefectServer starts an emulator on the real clock.
func prefectServer(t *testing.T) (*emulator.Emulator, string) {
	t.Helper()
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(em.Close)
	srv := httptest.NewServer(em.Handler())
	t.Cleanup(srv.Close)
	return em, srv.URL
}

// startAgent runs an agent named "agent" for the namespace against the
// real control plane until the test ends; it keeps finished Jobs.
func startAgent(t *testing.T, ns, api string) {
	t.Helper()
	a, err := agent.New(agent.Config{
		Prefect: prefect.NewClient(prefect.Config{API: api, Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}),
		Kube:    cluster.Client, Backend: "server", Name: "agent",
		Job:         manifest.AgentSettings{Namespace: ns, Backend: "server", API: api, LogToCloud: true},
		Intervals:   []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond},
		ClaimSettle: 20 * time.Millisecond, ClaimRecheck: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- a.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("the agent returned: %v", err)
			}
		case <-time.After(time.Minute):
			t.Errorf("the agent did not stop within a minute")
		}
	})
}
