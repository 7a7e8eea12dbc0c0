// Package agent is the Prefect 1 Kubernetes agent: it registers with the
// backend, polls for flow runs whose labels it matches, turns each into a Job
// (pkg/manifest), marks the run Submitted and creates the Job. This package
// is the submitter (Prefect -> Kubernetes); the Job controller (Kubernetes ->
// Prefect, pkg/agent/jobs) reports what becomes of the Jobs, and the
// submitter reads its cache through JobIndex alone.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/runlog"
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
	// Concurrency bounds the runs being submitted at once; a run waiting
	// out ClaimSettle lends its slot (settle).
	Concurrency int
	// HealthAddress serves /api/health and /api/poke when set (host:port).
	HealthAddress string
	// Profiling adds Go's /debug/pprof handlers to that server.
	Profiling bool
	// ShutdownTimeout is how long in-flight submissions may go on as usual
	// after a stop. Then they hurry: Job creation stops retrying, and a run
	// whose Job could not be created goes back to Scheduled. Work still
	// running ShutdownGrace later is abandoned (a run it leaves Submitted is
	// recovered at the next start). The worst-case stop is about
	// ShutdownTimeout + ShutdownGrace + 20 s (a last report on a fresh
	// context) + 1 s (releasing the Lease).
	ShutdownTimeout time.Duration
	// ShutdownGrace is the time after ShutdownTimeout before in-flight work
	// is abandoned (default 45 s).
	ShutdownGrace time.Duration
	// CreateRetryFor is how long a Job creation that meets transport errors,
	// 5xx or 429 is retried before the run goes back to Scheduled (default 3 min).
	CreateRetryFor time.Duration
	// RecoverInterval is the pause between looks for runs this agent marked
	// Submitted without creating their Job (default 30 s; a mark whose
	// outcome the agent could not learn brings the next look forward); RecoverGrace is how
	// old such a mark must be (default 5 s) and RecoverWindow how old it may
	// be (default 10 min: older ones are Lazarus's).
	RecoverInterval, RecoverGrace, RecoverWindow time.Duration
	// Intervals are the sleeps between polls: the first after a poll that
	// found work, then one more step for each idle poll (default 0.25 s, then
	// 0.5 s doubling to 10 s, as the original).
	Intervals []time.Duration
	// KubeRequests, when set, is shown in /metrics; wrap Kube's transport with it.
	KubeRequests *KubeRequestCounter
	// Manage sets how the Job controller watches and cleans up the agent's
	// Jobs (its namespace, selector and heartbeat interval come from here).
	Manage jobs.Config
	// LeaderElection, when set, makes only the elected replica submit and manage.
	LeaderElection *LeaderElection
	// ClaimSettle is how long after a Submitted mark the run's history is
	// read to decide the claim (default 1 s: writes in flight land), and
	// ClaimRecheck how long after the Job's creation the claim is decided
	// again (default 5 s); see claim.go.
	ClaimSettle, ClaimRecheck time.Duration
	// HeartbeatInterval is how often the agent sends the heartbeat of a run
	// it holds on purpose (a Job waiting within its pending policy, a
	// relaunch whose pod starts), well inside Lazarus' 10 min (default 2 min).
	HeartbeatInterval time.Duration
	// Guardrails are the concurrency limits and the late-run policy (guard.go).
	Guardrails Guardrails
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// The stop's time limits with the defaults, and the longest a stop can then
// take: the two windows, a last report on a fresh context (20 s) and the
// Lease's release. An installed pod's grace period must exceed MaxStop.
const (
	DefaultShutdownTimeout = 30 * time.Second
	DefaultShutdownGrace   = 45 * time.Second
	MaxStop                = DefaultShutdownTimeout + DefaultShutdownGrace + 20*time.Second + 5*time.Second
)

// DefaultIntervals are the original agent's poll intervals.
var DefaultIntervals = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}

// Agent runs the polling loop.
type Agent struct {
	cfg      Config
	tenantID string
	agentID  string

	wake chan struct{}
	// recoverSoon asks for a recovery pass once RecoverGrace has passed.
	recoverSoon chan struct{}
	inFlight    sync.Map             // flow run id -> struct{}
	waiting     sync.Map             // flow run id -> time.Time its worker waits for
	refused     sync.Map             // flow run id -> time.Time its Submitted mark was refused
	dropped     map[string]time.Time // ids the metadata query dropped -> when to ask again
	lastLoop    atomic.Int64
	// lastQueueCall is the last get_runs_in_queue answered (poll loop only).
	lastQueueCall time.Time
	standby       atomic.Bool // waiting for the leader Lease; healthy without polling
	slots         chan struct{}
	// settling counts the runs waiting out ClaimSettle with their slot lent
	// (settle).
	settling chan struct{}
	workers  sync.WaitGroup
	metrics  *metrics
	access   accessProblems // watches refused for lack of a verb (permissions.go)
	probe    probeState     // what /livez and /readyz read (probes.go)
	// templateRetries holds runs whose template read failed for now
	// (template_retry.go): flow run id -> templateRetry.
	templateRetries sync.Map
	events          *jobs.Events // Events on Jobs
	// jobMetrics are the Job controller's metrics, kept across leader terms.
	jobMetrics *jobs.Metrics
	// jobs is what the submitter reads of the Job controller's cache: a
	// submission finds the run's earlier Jobs there without a request, and
	// the limits count the unfinished Jobs.
	jobs JobIndex
	// index is where each Job controller publishes its cache (jobs).
	index *jobs.Index
	// runs writes the agent's lines to flow runs' logs.
	runs *runlog.Writer
	// limits and late are the guardrails (limits.go, lateness.go).
	limits *limiter
	late   *lateness
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
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.CreateRetryFor <= 0 {
		cfg.CreateRetryFor = 3 * time.Minute
	}
	if cfg.RecoverInterval <= 0 {
		cfg.RecoverInterval = 30 * time.Second
	}
	if cfg.RecoverGrace <= 0 {
		cfg.RecoverGrace = 5 * time.Second
	}
	if cfg.RecoverWindow <= 0 {
		cfg.RecoverWindow = 10 * time.Minute
	}
	if cfg.ClaimSettle <= 0 {
		cfg.ClaimSettle = DefaultClaimSettle
	}
	if cfg.ClaimRecheck <= 0 {
		cfg.ClaimRecheck = DefaultClaimRecheck
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
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
	if cfg.Job.Owner == "" {
		cfg.Job.Owner = AgentIdentity(cfg.Name, cfg.Labels)
	}
	a := &Agent{cfg: cfg, wake: make(chan struct{}, 1), recoverSoon: make(chan struct{}, 1), dropped: map[string]time.Time{}, slots: make(chan struct{}, cfg.Concurrency), settling: make(chan struct{}, settleLending*cfg.Concurrency), metrics: newMetrics(), events: jobs.NewEvents(),
		runs: runlog.New(cfg.Prefect, cfg.Name, cfg.Now), index: &jobs.Index{}}
	a.jobs = a.index
	a.jobMetrics = jobs.NewMetrics(a.metrics.registry)
	if cfg.KubeRequests != nil {
		a.metrics.registry.MustRegister(cfg.KubeRequests.vec)
	}
	a.limits = newLimiter(cfg.Guardrails.Limits, cfg.Now)
	a.late = newLateness(cfg.Guardrails.MaxLateness, cfg.Guardrails.LateRuns, cfg.Now)
	a.registerLimitMetrics()
	cfg.Prefect.SetOnError(func(op string, _ error) { a.metrics.apiErrors.WithLabelValues(op).Inc() })
	return a, nil
}

// Run connects to the backend, then polls for runs and manages the agent's
// Jobs until ctx ends or MaxPolls is reached (with leader election, only
// while it leads). In-flight submissions are given ShutdownTimeout to finish.
func (a *Agent) Run(ctx context.Context) error {
	log := klog.FromContext(ctx)
	a.lastLoop.Store(a.cfg.Now().UnixNano())
	if a.cfg.HealthAddress != "" {
		// Served from the start: a pod waiting for the Prefect API is alive
		// and says why it is not ready.
		stop, err := a.serveHealth(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	log.Info("Agent registered", "agent", a.cfg.Name, "id", a.agentID, "tenant", a.tenantID, "labels", a.cfg.Labels, "namespace", a.cfg.Job.Namespace)
	a.logGuardrails(log)
	stopEvents := a.events.Start(ctx, a.cfg.Kube)
	defer stopEvents()
	a.lastLoop.Store(a.cfg.Now().UnixNano())
	if a.cfg.LeaderElection != nil {
		return a.runAsLeader(ctx)
	}
	return a.work(ctx)
}

// work polls and manages Jobs until ctx ends or MaxPolls is reached, then
// winds down as stop.go describes. It returns once all of the work ended.
func (a *Agent) work(ctx context.Context) error {
	log := klog.FromContext(ctx)
	manageCtx, stopManaging := context.WithCancel(ctx)
	defer stopManaging()
	managed := make(chan error, 1)
	go func() { managed <- a.manageJobs(manageCtx) }()
	workCtx, abandonWork := context.WithCancel(context.WithoutCancel(ctx))
	defer abandonWork()
	// hurry is closed when the stop hurries (stop.go); every piece of work
	// started here gets it.
	hurry := make(chan struct{})
	pollCtx, stopPolling := context.WithCancel(ctx)
	recovered := make(chan struct{})
	go func() { defer close(recovered); a.recoverLoop(pollCtx, workCtx, hurry) }()
	log.Info("Waiting for flow runs...")
	a.loop(pollCtx, workCtx, hurry)
	stopPolling()
	if ctx.Err() != nil {
		// A stop: job management winds down alongside the submissions, so
		// the two budgets overlap instead of adding up.
		stopManaging()
	}
	<-recovered
	a.drain(log, hurry, abandonWork)
	stopManaging()
	err := <-managed
	log.Info("Agent stopped")
	return err
}

// manageJobs runs a Job controller (pkg/agent/jobs) over the agent's Jobs
// until ctx ends, after adopting those an earlier version made (owner.go).
func (a *Agent) manageJobs(ctx context.Context) error {
	cfg := a.cfg.Manage
	cfg.Namespace, cfg.JobSelector, cfg.HeartbeatInterval = a.cfg.Job.Namespace, a.ownJobsSelector(), a.cfg.HeartbeatInterval
	deps := jobs.Dependencies{Kube: a.cfg.Kube, Prefect: a.cfg.Prefect, Runs: a.runs, Events: a.events, Metrics: a.jobMetrics,
		Access: &a.access, Index: a.index, Now: a.cfg.Now}
	if a.limits.enabled() {
		deps.JobEnded = func() { a.limits.jobEnded(a.Poke) }
	}
	ns := cfg.Namespace
	if cfg.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	a.adoptAndCountOthers(ctx, ns)
	return jobs.NewController(deps, cfg).Run(ctx, cfg.Workers)
}

// connect finds the tenant, registers the agent and checks the connection.
// Failures that can pass (an unreachable API, timeouts, 5xx) are retried
// until ctx ends; refusals (a bad key, a malformed request) end the agent.
func (a *Agent) connect(ctx context.Context) error {
	log := klog.FromContext(ctx)
	delay := time.Second
	for {
		a.lastLoop.Store(a.cfg.Now().UnixNano())
		a.probe.calling(a.cfg.Now(), true)
		err := a.connectOnce(ctx)
		a.probe.calling(a.cfg.Now(), false)
		a.lastLoop.Store(a.cfg.Now().UnixNano())
		a.probe.report(a.cfg.Now(), err == nil, "cannot reach the Prefect API", err)
		if err == nil || ctx.Err() != nil || !transientPrefectError(err) {
			return err
		}
		log.Error(err, "Cannot reach the Prefect API yet; trying again", "in", delay)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, connectRetryMax)
	}
}

// connectRetryMax caps the pause between tries to reach the Prefect API at
// start, so the agent is ready within seconds of the API's return.
const connectRetryMax = 5 * time.Second

// transientPrefectError tells an API that could answer later from a refusal.
func transientPrefectError(err error) bool {
	var apiErr *prefect.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.Status == 0 || apiErr.Status >= 500 || apiErr.Status == http.StatusTooManyRequests
}

func (a *Agent) connectOnce(ctx context.Context) error {
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

// loop polls with the original agent's back-off until pollCtx ends. The 20 ms
// burst interval holds only while full pages of new runs arrive; otherwise
// the back-off applies, capped at the earliest start time a worker waits for.
// The workers it starts run on workCtx and wrap up once hurry is closed.
func (a *Agent) loop(pollCtx, workCtx context.Context, hurry hurrySignal) {
	log := klog.FromContext(pollCtx)
	step := 1
	for polls := 0; a.cfg.MaxPolls == 0 || polls < a.cfg.MaxPolls; polls++ {
		a.lastLoop.Store(a.cfg.Now().UnixNano())
		began := time.Now()
		a.probe.calling(a.cfg.Now(), true)
		result, err := a.poll(pollCtx, workCtx, hurry)
		a.probe.calling(a.cfg.Now(), false)
		a.lastLoop.Store(a.cfg.Now().UnixNano())
		a.probe.report(a.cfg.Now(), true, "polling the Prefect API fails", err)
		a.metrics.pollLatency.Observe(time.Since(began).Seconds())
		if pollCtx.Err() != nil {
			return
		}
		if err != nil {
			log.Error(err, "Polling for flow runs failed; trying again")
		}
		var sleep time.Duration
		switch {
		case result.handed > 0 && result.fresh >= queuePage:
			// A full page of new runs: more are waiting behind it.
			sleep = burstInterval
		case result.handed > 0:
			step = 0
			sleep = a.cfg.Intervals[0]
		default:
			if step < len(a.cfg.Intervals)-1 {
				step++
			}
			sleep = a.cfg.Intervals[step]
		}
		if next, ok := a.earliestWait(); ok {
			sleep = max(min(sleep, next.Sub(a.cfg.Now())), burstInterval)
		}
		if a.cfg.MaxPolls != 0 && polls+1 >= a.cfg.MaxPolls {
			return
		}
		select {
		case <-pollCtx.Done():
			return
		case <-a.wake:
		case <-time.After(sleep):
		}
	}
}

// earliestWait is the earliest start time a worker waits for.
func (a *Agent) earliestWait() (time.Time, bool) {
	var first time.Time
	a.waiting.Range(func(_, v any) bool {
		if t := v.(time.Time); first.IsZero() || t.Before(first) {
			first = t
		}
		return true
	})
	return first, !first.IsZero()
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

// pollResult says how many runs the queue returned, how many of those were
// neither in flight nor recently dropped, and how many were handed to workers.
type pollResult struct{ queued, fresh, handed int }

// poll asks for due runs and hands each new one to a worker.
func (a *Agent) poll(pollCtx, workCtx context.Context, hurry hurrySignal) (pollResult, error) {
	now := a.cfg.Now()
	for id, until := range a.dropped {
		if now.After(until) {
			delete(a.dropped, id)
		}
	}
	ids, err := a.dueRuns(pollCtx, now)
	if err != nil {
		return pollResult{}, err
	}
	result := pollResult{queued: len(ids)}
	var fresh []string
	for _, id := range ids {
		_, busy := a.inFlight.Load(id)
		_, skip := a.dropped[id]
		if !busy && !skip && !a.lockedOut(id, now) && !a.templateBackingOff(id, now) {
			fresh = append(fresh, id)
		}
	}
	result.fresh = len(fresh)
	if len(fresh) == 0 {
		return result, nil
	}
	runs, err := a.cfg.Prefect.RunsToSubmit(pollCtx, fresh, now.Add(-retryBuffer))
	if err != nil {
		return result, err
	}
	inQueueOrder(runs, fresh)
	// Ids the metadata query drops (Queued, Paused, a retry inside the
	// in-pod buffer, ...) are not asked about again for one long interval.
	returned := make(map[string]bool, len(runs))
	for _, run := range runs {
		returned[run.Id] = true
	}
	for _, id := range fresh {
		if !returned[id] {
			a.dropped[id] = now.Add(a.cfg.Intervals[len(a.cfg.Intervals)-1])
		}
	}
	runs, guarded, stopped := a.guard(pollCtx, workCtx, hurry, runs)
	result.handed += guarded
	if stopped {
		return result, nil
	}
	for _, run := range runs {
		started, stopped := a.startWorker(pollCtx, run.Id, func() { a.submit(workCtx, pollCtx, hurry, run); a.limits.ended(run.Id) })
		if !started {
			a.limits.release(run.Id)
		}
		if stopped {
			return result, nil
		}
		if started {
			result.handed++
		}
	}
	return result, nil
}
