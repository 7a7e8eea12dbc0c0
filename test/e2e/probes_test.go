package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
)

// TestProbesWhileThePrefectAPIRefusesConnections starts the image's binary
// while the Prefect API refuses connections: /livez answers 200 all along
// (the installed liveness probe never restarts the pod), /readyz answers 503
// saying why, then 200 within seconds of the API's return, and the run
// waiting meanwhile gets its Job.
func TestProbesWhileThePrefectAPIRefusesConnections(t *testing.T) {
	const refusal = 20 * time.Second
	ns := cluster.Namespace(t)
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(em.Handler())
	srv.Listener = em.Listener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	run, _ := em.AddFlowRun(emulator.FlowRunSpec{Labels: []string{"e2e"}})
	em.RefuseConnections(refusal)
	refusedUntil := time.Now().Add(refusal)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := startAgentProcess(t, prefectAgent(ns, "--api", srv.URL, "--agent-address", addr))
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })

	probe := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	served := false
	var notReady string
	for time.Now().Before(refusedUntil.Add(-time.Second)) {
		select {
		case err := <-p.exited:
			t.Fatalf("the agent exited while the API refused connections: %v\n%s", err, p.stderr.String())
		default:
		}
		live, liveBody := probe("/livez")
		ready, readyBody := probe("/readyz")
		switch {
		case live == 0 && !served:
			// The process is still starting.
		case live != http.StatusOK:
			t.Fatalf("/livez answered %d %s while the agent waited for the API", live, liveBody)
		case ready == http.StatusOK:
			t.Fatalf("/readyz answered 200 while the API refused connections")
		default:
			served, notReady = true, readyBody
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !served || !strings.Contains(notReady, "Prefect API") {
		t.Fatalf("/readyz did not say why the agent is not ready: served %v, %q\n%s", served, notReady, p.stderr.String())
	}
	t.Logf("while refused: /livez 200, /readyz 503 %s", strings.TrimSpace(notReady))
	for {
		if code, _ := probe("/readyz"); code == http.StatusOK {
			break
		}
		if time.Since(refusedUntil) > 15*time.Second {
			t.Fatalf("/readyz not 200 15 s after the API came back\n%s", p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ready %s after the API came back", time.Since(refusedUntil).Round(100*time.Millisecond))
	p.waitForJob(t, "prefect-agent", ns, run.ID)
	if code, body := probe("/livez"); code != http.StatusOK {
		t.Fatalf("/livez %d %s once working", code, body)
	}
	p.stopWithSIGTERM(t, "prefect-agent")
}
