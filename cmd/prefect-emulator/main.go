// Command prefect-emulator serves the in-memory Prefect 1 API emulator, for
// the demo and for trying the agent without a Prefect Server.
//
//	prefect-emulator --addr 127.0.0.1:4200 --runs runs.json
//
// GraphQL is served at / (as Prefect Server's gateway), the control API under
// /emulator/: POST /emulator/flow-runs schedules runs (one spec or a list),
// GET /emulator/flow-runs[/ID] reads them back with their states and logs,
// POST /emulator/flow-runs/ID/cancel cancels one as the UI does. It follows
// Prefect Server: a 30 s Submitted lock per GraphQL replica (--replicas),
// Lazarus and the zombie killer on Server's periods unless told otherwise.
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
	replicas := flag.Int("replicas", 1, "GraphQL replicas requests are spread over, each with its own 30 s Submitted lock")
	lock := flag.Duration("submitted-lock", emulator.DefaultSubmittedLock, "how long a replica refuses a second Submitted state for a run")
	var lazarus emulator.Lazarus
	flag.BoolVar(&lazarus.Off, "lazarus-off", false, "do not run Lazarus")
	flag.DurationVar(&lazarus.Period, "lazarus-period", emulator.DefaultLazarusPeriod, "how often Lazarus runs")
	flag.DurationVar(&lazarus.Cutoff, "lazarus-cutoff", emulator.DefaultLazarusCutoff, "heartbeat age after which Lazarus reschedules a Submitted or Running run")
	flag.IntVar(&lazarus.AttemptLimit, "lazarus-attempts", emulator.DefaultLazarusAttempts, "reschedules of one run before Lazarus sets it Failed")
	var zombies emulator.ZombieKiller
	flag.BoolVar(&zombies.Off, "zombie-killer-off", false, "do not run the zombie killer")
	flag.DurationVar(&zombies.Period, "zombie-killer-period", emulator.DefaultZombieKillerPeriod, "how often the zombie killer runs")
	flag.DurationVar(&zombies.Cutoff, "zombie-killer-cutoff", emulator.DefaultZombieKillerCutoff, "flow-run heartbeat age after which the zombie killer acts")
	flag.Parse()

	cfg := emulator.Config{Backend: emulator.Backend(*backend), Replicas: *replicas, SubmittedLock: *lock, Lazarus: lazarus, ZombieKiller: zombies}
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
	defer em.Close()
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
