// Package agent is the Prefect 1 Kubernetes agent: it registers with the
// backend, polls for flow runs whose labels it matches, turns each into a Job
// (pkg/manifest), marks the run Submitted and creates the Job.
package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// AgentType is the type the agent registers as, as the original did.
const AgentType = "KubernetesAgent"

// Config is everything the agent needs.
type Config struct {
	Prefect *prefect.Client
	Kube    kubernetes.Interface
	// Backend is "server" or "cloud".
	Backend string
	// Name is the agent's name; it also names the agent's lines in run logs.
	Name   string
	Labels []string
	// Job holds the agent-wide Job settings.
	Job manifest.AgentSettings
	// MaxPolls stops the agent after that many polls (0: never).
	MaxPolls int
	// Concurrency bounds the runs being submitted at once.
	Concurrency int
	// HealthAddress serves /api/health and /api/poke when set (host:port).
	HealthAddress string
	// Profiling adds Go's /debug/pprof handlers to that server.
	Profiling bool
	// ShutdownTimeout bounds how long in-flight submissions may finish after a stop.
	ShutdownTimeout time.Duration
	// Intervals are the sleeps between polls: the first after a poll that
	// found work, then one more step for each idle poll (default 0.25 s, then
	// 0.5 s doubling to 10 s, as the original).
	Intervals []time.Duration
	// KubeRequests, when set, is shown in /metrics; wrap Kube's transport with it.
	KubeRequests *KubeRequestCounter
	// Manage sets how the agent watches and cleans up its Jobs.
	Manage ManageConfig
	// LeaderElection, when set, makes only the elected replica submit and manage.
	LeaderElection *LeaderElection
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// DefaultIntervals are the original agent's poll intervals.
var DefaultIntervals = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}

// Agent runs the polling loop.
type Agent struct {
	cfg      Config
	tenantID string
	agentID  string

	wake     chan struct{}
	inFlight sync.Map // flow run id -> struct{}
	lastLoop atomic.Int64
	standby  atomic.Bool // waiting for the leader Lease; healthy without polling
	slots    chan struct{}
	workers  sync.WaitGroup
	metrics  *metrics
	access   accessProblems // watches refused for lack of a verb (permissions.go)
}

// New checks the configuration and returns an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Prefect == nil || cfg.Kube == nil {
		return nil, fmt.Errorf("agent: a Prefect client and a Kubernetes client are required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if len(cfg.Intervals) == 0 {
		cfg.Intervals = DefaultIntervals
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Labels == nil {
		cfg.Labels = []string{}
	}
	a := &Agent{cfg: cfg, wake: make(chan struct{}, 1), slots: make(chan struct{}, cfg.Concurrency), metrics: newMetrics()}
	if cfg.KubeRequests != nil {
		a.metrics.registry.MustRegister(cfg.KubeRequests.vec)
	}
	cfg.Prefect.SetOnError(func(op string, _ error) { a.metrics.apiErrors.WithLabelValues(op).Inc() })
	return a, nil
}

// Run connects to the backend, then polls for runs and manages the agent's
// Jobs until ctx ends or MaxPolls is reached (with leader election, only
// while it leads). In-flight submissions are given ShutdownTimeout to finish.
func (a *Agent) Run(ctx context.Context) error {
	log := klog.FromContext(ctx)
	if err := a.connect(ctx); err != nil {
		return err
	}
	log.Info("Agent registered", "agent", a.cfg.Name, "id", a.agentID, "tenant", a.tenantID, "labels", a.cfg.Labels, "namespace", a.cfg.Job.Namespace)
	a.lastLoop.Store(a.cfg.Now().UnixNano())
	if a.cfg.HealthAddress != "" {
		stop, err := a.serveHealth(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	if a.cfg.LeaderElection != nil {
		return a.runAsLeader(ctx)
	}
	return a.work(ctx)
}

// work polls and manages Jobs until ctx ends or MaxPolls is reached.
func (a *Agent) work(ctx context.Context) error {
	log := klog.FromContext(ctx)
	manageCtx, stopManaging := context.WithCancel(ctx)
	defer stopManaging()
	managed := make(chan error, 1)
	go func() { managed <- a.newManager().run(manageCtx) }()
	// Submissions run on a context that outlives a stop signal, bounded by
	// ShutdownTimeout, so a run is never left half submitted.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	log.Info("Waiting for flow runs...")
	a.loop(ctx, workCtx)
	done := make(chan struct{})
	go func() { a.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.cfg.ShutdownTimeout):
		log.Info("Stopping submissions still in flight after the shutdown timeout", "timeout", a.cfg.ShutdownTimeout)
		cancelWork()
		<-done
	}
	stopManaging()
	err := <-managed
	log.Info("Agent stopped")
	return err
}

// connect finds the tenant, registers the agent and checks the connection.
func (a *Agent) connect(ctx context.Context) error {
	tenant, err := a.cfg.Prefect.ResolveTenant(ctx, a.cfg.Backend)
	if err != nil {
		return fmt.Errorf("finding the Prefect tenant: %w", err)
	}
	a.tenantID = tenant
	a.cfg.Prefect.SetTenantID(tenant)
	if a.cfg.Job.TenantID == "" {
		a.cfg.Job.TenantID = tenant
	}
	id, err := a.cfg.Prefect.RegisterAgent(ctx, tenant, a.cfg.Name, AgentType, a.cfg.Labels)
	if err != nil {
		return fmt.Errorf("registering the agent: %w", err)
	}
	a.agentID = id
	if _, err := prefect.Hello(ctx, a.cfg.Prefect.GraphQL()); err != nil {
		return fmt.Errorf("error while contacting the Prefect API: %w", err)
	}
	return nil
}

// loop polls with the original agent's back-off until ctx ends.
func (a *Agent) loop(ctx, workCtx context.Context) {
	log := klog.FromContext(ctx)
	step := 1
	for polls := 0; a.cfg.MaxPolls == 0 || polls < a.cfg.MaxPolls; polls++ {
		a.lastLoop.Store(a.cfg.Now().UnixNano())
		began := time.Now()
		result, err := a.poll(ctx, workCtx)
		a.metrics.pollLatency.Observe(time.Since(began).Seconds())
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error(err, "Polling for flow runs failed; trying again")
		}
		sleep := a.cfg.Intervals[0]
		switch {
		case result.handed > 0 && result.queued >= queuePage:
			// A full page: more runs are waiting behind it, ask again at once.
			sleep = burstInterval
		case result.handed > 0:
			step = 0
		case result.queued > 0:
			// Everything returned is already being submitted.
			sleep = burstInterval
		default:
			if step < len(a.cfg.Intervals)-1 {
				step++
			}
			sleep = a.cfg.Intervals[step]
		}
		if a.cfg.MaxPolls != 0 && polls+1 >= a.cfg.MaxPolls {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-time.After(sleep):
		}
	}
}

// Poke wakes the loop for an immediate poll.
func (a *Agent) Poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// queuePage is how many runs the server returns per poll at most.
const queuePage = 25

// burstInterval is the pause between polls while a burst is being submitted.
const burstInterval = 20 * time.Millisecond

// pollResult says how many runs the queue returned and how many were new.
type pollResult struct{ queued, handed int }

// poll asks for due runs and hands each new one to a worker.
func (a *Agent) poll(ctx, workCtx context.Context) (pollResult, error) {
	now := a.cfg.Now()
	ids, err := a.cfg.Prefect.RunsInQueue(ctx, a.tenantID, a.cfg.Labels, now.Add(10*time.Second))
	if err != nil {
		return pollResult{}, err
	}
	result := pollResult{queued: len(ids)}
	var fresh []string
	for _, id := range ids {
		if _, busy := a.inFlight.Load(id); !busy {
			fresh = append(fresh, id)
		}
	}
	if len(fresh) == 0 {
		return result, nil
	}
	runs, err := a.cfg.Prefect.RunsToSubmit(ctx, fresh, now.Add(-3*time.Second))
	if err != nil {
		return result, err
	}
	for _, run := range runs {
		if _, busy := a.inFlight.LoadOrStore(run.Id, struct{}{}); busy {
			continue
		}
		select {
		case a.slots <- struct{}{}:
		case <-ctx.Done():
			a.inFlight.Delete(run.Id)
			return result, nil
		}
		result.handed++
		a.workers.Add(1)
		go func(run prefect.FlowRun) {
			defer func() {
				<-a.slots
				a.inFlight.Delete(run.Id)
				a.workers.Done()
			}()
			a.submit(workCtx, ctx, run)
		}(run)
	}
	return result, nil
}
