package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
)

// demoTenant is the tenant of --backend cloud, fixed so demo scripts can name it.
var demoTenant = emulator.Tenant{ID: "2b1f6e0c-5d4a-4c3b-9a8f-7e6d5c4b3a21", Name: "demo", Slug: "demo"}

// Options are the emulator's flags and what Complete makes of them.
type Options struct {
	Addr     string
	Backend  string
	APIKey   string
	RunsFile string
	Replicas int
	Lock     time.Duration
	Gap      time.Duration
	Lazarus  emulator.Lazarus
	Zombies  emulator.ZombieKiller

	out   io.Writer
	cfg   emulator.Config
	specs []emulator.FlowRunSpec
}

func newCommand(out io.Writer) *cobra.Command {
	o := &Options{out: out}
	cmd := &cobra.Command{
		Use:           "prefect-emulator",
		Short:         "Serve an in-memory Prefect 1 API that follows Prefect Server",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", "127.0.0.1:4200", "address to listen on")
	f.StringVar(&o.Backend, "backend", string(emulator.Server), "server or cloud")
	f.StringVar(&o.APIKey, "api-key", "", "with --backend cloud: the API key to accept")
	f.StringVar(&o.RunsFile, "runs", "", "JSON file of flow runs to schedule at start (a list of specs)")
	f.IntVar(&o.Replicas, "replicas", 1, "GraphQL replicas requests are spread over, each with its own Submitted lock")
	f.DurationVar(&o.Lock, "submitted-lock", emulator.DefaultSubmittedLock, "how long a replica refuses a second Submitted state for a run")
	f.DurationVar(&o.Gap, "state-insert-delay", 0, "time between reading a run's version and inserting its new state: writes in the gap get the same version, as on Server")
	f.BoolVar(&o.Lazarus.Off, "lazarus-off", false, "do not run Lazarus")
	f.DurationVar(&o.Lazarus.Period, "lazarus-period", emulator.DefaultLazarusPeriod, "how often Lazarus runs")
	f.DurationVar(&o.Lazarus.Cutoff, "lazarus-cutoff", emulator.DefaultLazarusCutoff, "heartbeat age after which Lazarus reschedules a Submitted or Running run")
	f.IntVar(&o.Lazarus.AttemptLimit, "lazarus-attempts", emulator.DefaultLazarusAttempts, "reschedules of one run before Lazarus sets it Failed")
	f.BoolVar(&o.Zombies.Off, "zombie-killer-off", false, "do not run the zombie killer")
	f.DurationVar(&o.Zombies.Period, "zombie-killer-period", emulator.DefaultZombieKillerPeriod, "how often the zombie killer runs")
	f.DurationVar(&o.Zombies.Cutoff, "zombie-killer-cutoff", emulator.DefaultZombieKillerCutoff, "flow-run heartbeat age after which the zombie killer acts")
	return cmd
}

// Complete builds the emulator configuration and reads --runs.
func (o *Options) Complete() error {
	o.cfg = emulator.Config{Backend: emulator.Backend(o.Backend), Replicas: o.Replicas, SubmittedLock: o.Lock, StateInsertDelay: o.Gap, Lazarus: o.Lazarus, ZombieKiller: o.Zombies}
	if o.cfg.Backend == emulator.Cloud {
		o.cfg.Tenants = []emulator.Tenant{demoTenant}
		o.cfg.APIKeys = map[string]string{o.APIKey: demoTenant.ID}
	}
	if o.RunsFile == "" {
		return nil
	}
	data, err := os.ReadFile(o.RunsFile)
	if err != nil {
		return fmt.Errorf("--runs: %w", err)
	}
	if err := json.Unmarshal(data, &o.specs); err != nil {
		return fmt.Errorf("--runs %s: expected a JSON list of flow run specs: %w", o.RunsFile, err)
	}
	return nil
}

// Validate checks the flags that New does not.
func (o *Options) Validate() error {
	if o.cfg.Backend == emulator.Cloud && o.APIKey == "" {
		return errors.New("--backend cloud needs --api-key")
	}
	if o.Replicas < 1 {
		return fmt.Errorf("--replicas must be at least 1, got %d", o.Replicas)
	}
	if o.Lock <= 0 || o.Lazarus.Period <= 0 || o.Lazarus.Cutoff <= 0 || o.Zombies.Period <= 0 || o.Zombies.Cutoff <= 0 {
		return errors.New("--submitted-lock, --lazarus-period, --lazarus-cutoff, --zombie-killer-period and --zombie-killer-cutoff must be positive durations (use --lazarus-off or --zombie-killer-off to turn a service off)")
	}
	if o.Gap < 0 {
		return fmt.Errorf("--state-insert-delay must not be negative, got %s", o.Gap)
	}
	if o.Lazarus.AttemptLimit < 1 {
		return fmt.Errorf("--lazarus-attempts must be at least 1, got %d", o.Lazarus.AttemptLimit)
	}
	return nil
}

// Run serves the emulator until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	em, err := emulator.New(o.cfg)
	if err != nil {
		return err
	}
	defer em.Close()
	for _, s := range o.specs {
		if _, err := em.AddFlowRun(s); err != nil {
			return fmt.Errorf("--runs %s: %w", o.RunsFile, err)
		}
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "Prefect emulator (%s, %d GraphQL replica(s)) listening on http://%s\n", o.cfg.Backend, o.Replicas, ln.Addr())
	srv := &http.Server{Handler: em.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(em.Listener(ln)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
