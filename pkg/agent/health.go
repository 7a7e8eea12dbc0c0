package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// stallAfter is how long the loop may go without a poll before /api/health fails.
const stallAfter = 5 * time.Minute

// serveHealth starts the agent's HTTP server: /api/health answers 200 while
// the polling loop is alive or the replica stands by for the leader Lease
// (503 once the loop has stalled, or while job management's watches are
// refused for lack of a verb), /api/poke wakes it,
// /metrics serves Prometheus metrics.
func (a *Agent) serveHealth(ctx context.Context) (stop func(), err error) {
	mux := http.NewServeMux()
	a.probeHandlers(mux)
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if ok, why := a.alive(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			msg, _ := json.Marshal(map[string]string{"error": why})
			_, _ = w.Write(msg)
			return
		}
		if problem := a.access.message(); problem != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			msg, _ := json.Marshal(map[string]string{"error": problem})
			_, _ = w.Write(msg)
			return
		}
		fmt.Fprint(w, "{}")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	if a.cfg.Profiling {
		mux.Handle("/debug/pprof/", loopbackOnly(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", loopbackOnly(http.HandlerFunc(pprof.Profile)))
	}
	mux.HandleFunc("POST /api/poke", func(w http.ResponseWriter, _ *http.Request) {
		a.Poke()
	})
	ln, err := net.Listen("tcp", a.cfg.HealthAddress)
	if err != nil {
		return nil, fmt.Errorf("--agent-address %s: %w", a.cfg.HealthAddress, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "Agent HTTP server stopped")
		}
	}()
	klog.FromContext(ctx).Info("Serving /livez, /readyz, /api/health and /api/poke", "address", ln.Addr().String())
	return func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}, nil
}

// loopbackOnly serves requests from the pod itself (or kubectl port-forward,
// which arrives on loopback) and refuses the rest of the network.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			http.Error(w, "profiling is served to loopback clients only: use kubectl port-forward", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
