// Command prefect-emulator serves the in-memory Prefect 1 API emulator, for
// the demo and for trying the agent without a Prefect Server.
//
//	prefect-emulator --addr 127.0.0.1:4200 --runs runs.json
//
// GraphQL is served at / (as Prefect Server's gateway), the control API under
// /emulator/: POST /emulator/flow-runs schedules runs (one spec or a list),
// GET /emulator/flow-runs[/ID] reads them back with their states and logs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:4200", "address to listen on")
	backend := flag.String("backend", "server", "server or cloud")
	apiKey := flag.String("api-key", "", "with --backend cloud: the API key to accept")
	runsFile := flag.String("runs", "", "JSON file of flow runs to schedule at start (a list of specs)")
	flag.Parse()

	cfg := emulator.Config{Backend: emulator.Backend(*backend)}
	if cfg.Backend == emulator.Cloud {
		if *apiKey == "" {
			return errors.New("--backend cloud needs --api-key")
		}
		tenant := emulator.Tenant{ID: "2b1f6e0c-5d4a-4c3b-9a8f-7e6d5c4b3a21", Name: "demo", Slug: "demo"}
		cfg.Tenants = []emulator.Tenant{tenant}
		cfg.APIKeys = map[string]string{*apiKey: tenant.ID}
	}
	em, err := emulator.New(cfg)
	if err != nil {
		return err
	}
	if *runsFile != "" {
		data, err := os.ReadFile(*runsFile)
		if err != nil {
			return err
		}
		var specs []emulator.FlowRunSpec
		if err := json.Unmarshal(data, &specs); err != nil {
			return fmt.Errorf("--runs %s: expected a JSON list of flow run specs: %w", *runsFile, err)
		}
		for _, s := range specs {
			if _, err := em.AddFlowRun(s); err != nil {
				return err
			}
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("Prefect emulator (%s) listening on http://%s\n", cfg.Backend, ln.Addr())
	srv := &http.Server{Handler: em.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
