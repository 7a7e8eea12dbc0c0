package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
)

// TestProbesWhileThePrefectAPIRefusesConnections starts the image's binary
// with the arguments of the Deployment `agent install` renders while the
// Prefect API refuses connections for 3 minutes, and probes it with that
// Deployment's liveness and readiness probes as the kubelet would: not one
// restart and never ready while refused, /readyz saying why, ready within
// seconds of the API's return, and the run waiting meanwhile gets its Job.
// It runs beside the package's other long tests (t.Parallel).
func TestProbesWhileThePrefectAPIRefusesConnections(t *testing.T) {
	t.Parallel()
	const refusal = 3 * time.Minute
	ns := cluster.Namespace(t)
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(em.Close)
	srv := httptest.NewUnstartedServer(em.Handler())
	srv.Listener = em.Listener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	run, _ := em.AddFlowRun(emulator.FlowRunSpec{Labels: []string{"e2e"}})

	c := installedAgent(t, ns, "--backend", "server", "--api", srv.URL, "-l", "e2e")
	if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet == nil {
		t.Fatalf("the installed agent lacks HTTP liveness and readiness probes: %+v", c)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := slices.Clone(c.Args)
	i := slices.Index(args, "--agent-address")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("the installed agent's arguments %q set no --agent-address", args)
	}
	args[i+1] = addr // the container's port, here on the test's host

	em.RefuseConnections(refusal)
	refusedUntil := time.Now().Add(refusal)
	p := startAgentProcess(t, prefectAgent(ns, args...))
	started := time.Now()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	liveness := startKubeletProber(ctx, "http://"+addr+c.LivenessProbe.HTTPGet.Path, c.LivenessProbe, started)
	readiness := startKubeletProber(ctx, "http://"+addr+c.ReadinessProbe.HTTPGet.Path, c.ReadinessProbe, started)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	var notReady string
	for time.Now().Before(refusedUntil.Add(-time.Second)) {
		select {
		case err := <-p.exited:
			t.Fatalf("the agent exited while the API refused connections: %v\n%s", err, tail(p.stderr.String(), 40))
		case <-time.After(time.Second):
		}
		if _, restarts, _ := liveness.state(); restarts > 0 {
			t.Fatalf("the installed liveness probe would have restarted the agent %s after its start, while the API refused connections\n%s",
				time.Since(started).Round(time.Second), tail(p.stderr.String(), 40))
		}
		if _, _, ready := readiness.state(); len(ready) > 0 {
			t.Fatalf("the installed readiness probe passed %s after the start, while the API refused connections", ready[0].Sub(started).Round(time.Second))
		}
		if code, body := get("/readyz"); code == http.StatusServiceUnavailable {
			notReady = strings.TrimSpace(body)
		} else if code == http.StatusOK {
			t.Fatalf("/readyz answered 200 while the API refused connections")
		}
	}
	if !strings.Contains(notReady, "Prefect API") {
		t.Fatalf("/readyz did not say why the agent is not ready: %q\n%s", notReady, tail(p.stderr.String(), 40))
	}
	liveProbes, restarts, _ := liveness.state()
	readyProbes, _, _ := readiness.state()
	t.Logf("%s of refused connections: %d liveness probes (%s), %d would-be restarts; %d readiness probes (%s), never ready; /readyz said %q",
		refusal, liveProbes, probeSettings(c.LivenessProbe.PeriodSeconds, c.LivenessProbe.FailureThreshold, c.LivenessProbe.TimeoutSeconds), restarts,
		readyProbes, probeSettings(c.ReadinessProbe.PeriodSeconds, c.ReadinessProbe.FailureThreshold, c.ReadinessProbe.TimeoutSeconds), notReady)

	// Ready within seconds of the API's return: /readyz at once, the
	// kubelet at its next readiness probe.
	var direct time.Duration
	deadline := refusedUntil.Add(time.Duration(c.ReadinessProbe.PeriodSeconds)*time.Second + 10*time.Second)
	for {
		if code, _ := get("/readyz"); code == http.StatusOK && direct == 0 {
			direct = time.Since(refusedUntil)
		}
		_, _, ready := readiness.state()
		if direct > 0 && len(ready) > 0 {
			kubelet := ready[0].Sub(refusedUntil)
			t.Logf("after the API came back: /readyz 200 in %s, the kubelet's readiness probe passed in %s", direct.Round(100*time.Millisecond), kubelet.Round(100*time.Millisecond))
			if limit := time.Duration(c.ReadinessProbe.PeriodSeconds)*time.Second + 5*time.Second; kubelet > limit {
				t.Fatalf("ready %s after the API came back, want within %s (one readiness period and 5 s)", kubelet, limit)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready %s after the API came back (/readyz 200 after %s)\n%s", time.Since(refusedUntil).Round(time.Second), direct, tail(p.stderr.String(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The installed agent deletes finished Jobs (kwok completes this one at
	// once): the run's log says its Job was created.
	for deadline := time.Now().Add(30 * time.Second); !hasJobLine(em, run.ID); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the run waiting meanwhile got no Job within 30 s\n%s", tail(p.stderr.String(), 40))
		}
	}
	if _, restarts, _ := liveness.state(); restarts > 0 {
		t.Fatalf("the liveness probe would have restarted the agent once it was working")
	}
	stop()
	p.stopWithSIGTERM(t, "prefect-agent")
}

// hasJobLine says whether the run's log names a Job created for it.
func hasJobLine(em *emulator.Emulator, runID string) bool {
	run, _ := em.FlowRun(runID)
	for _, l := range run.Logs {
		if strings.Contains(l.Message, "Submitted for execution: Job ") {
			return true
		}
	}
	return false
}

func probeSettings(period, failures, timeout int32) string {
	return fmt.Sprintf("every %d s, %d failures, %d s timeout", period, failures, max(timeout, 1))
}
