// Package agentcli holds the flags, environment fallbacks and start-up of the
// agent, shared by `kubectl prefect agent start` (the plugin, through
// cli-runtime) and the lean prefect-agent binary the image runs (client-go
// only). It imports nothing of cli-runtime, so the lean binary links none of
// its printers, resource builder or kustomize.
//
// A group of agent flags plugs in as a field of StartOptions with four steps,
// each called from the matching StartOptions method: AddFlags (register),
// Complete (environment fallbacks), Validate (name the bad flag) and a step
// that writes the group's values into the agent.Config (see AgentConfig).
package agentcli

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/internal/memlimit"
	agentpkg "github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	agentjobs "github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// StartShort is the one-line description of `agent start` and prefect-agent.
const StartShort = "Run the agent: poll Prefect for flow runs and run each as a Kubernetes Job"

// ShutdownTimeout is how long in-flight submissions may go on as usual after
// a stop signal; pkg/agent's MaxStop bounds the whole stop, and an installed
// pod's grace period (pkg/install.TerminationGracePeriodSeconds) exceeds it.
const ShutdownTimeout = agentpkg.DefaultShutdownTimeout

// StartOptions are the agent's own flags (besides the Kubernetes connection,
// which each binary adds its own way).
type StartOptions struct {
	Settings   SettingsFlags
	Templates  TemplateFlags
	Pending    PendingFlags
	Guardrails GuardrailFlags

	MaxPolls           int
	AgentAddress       string
	DeleteFinishedJobs bool
	Concurrency        int
	KubeQPS            float32
	KubeBurst          int
	KeepFailedJobs     bool
	WatchAllNamespaces bool
	LeaderElect        bool
	LeaseName          string
	Profiling          bool
	FailedPodLogLines  int
	FinishedRunGrace   time.Duration

	address string
}

// StartEnvFallbacks are start's own flags' environment variables.
var StartEnvFallbacks = map[string][]string{
	"agent-address":        {"PREFECT__CLOUD__AGENT__AGENT_ADDRESS"},
	"delete-finished-jobs": {"DELETE_FINISHED_JOBS"},
}

// NewStartOptions returns start's options with their defaults.
func NewStartOptions() *StartOptions {
	return &StartOptions{DeleteFinishedJobs: true, Concurrency: 32, KubeQPS: 100, KubeBurst: 200,
		FailedPodLogLines: agentjobs.DefaultFailedPodLogLines, FinishedRunGrace: agentjobs.DefaultFinishedRunGrace}
}

// AddFlags registers the agent's flags.
func (o *StartOptions) AddFlags(fs *pflag.FlagSet) {
	o.Settings.AddFlags(fs)
	o.Templates.AddFlags(fs)
	fs.IntVar(&o.MaxPolls, "max-polls", 0, "Stop after this many polls (0: run until stopped)")
	fs.StringVar(&o.AgentAddress, "agent-address", "", "Address of the agent's HTTP server for /livez, /readyz, /api/health and /api/poke, e.g. http://:8080 [PREFECT__CLOUD__AGENT__AGENT_ADDRESS]")
	fs.BoolVar(&o.DeleteFinishedJobs, "delete-finished-jobs", o.DeleteFinishedJobs, "Delete Jobs once they finish [DELETE_FINISHED_JOBS]")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "How many flow runs may be submitted at once (a run waiting out the second after its Submitted mark lends its slot)")
	fs.BoolVar(&o.KeepFailedJobs, "keep-failed-jobs", false, "Keep failed Jobs for inspection while deleting succeeded ones")
	fs.BoolVar(&o.WatchAllNamespaces, "watch-all-namespaces", false, "Manage the agent's Jobs in every namespace, not only the one it creates Jobs in")
	o.Pending.AddFlags(fs)
	fs.IntVar(&o.FailedPodLogLines, "failed-pod-log-lines", o.FailedPodLogLines, "Last lines of a failed flow container's output the agent copies into the run log before the Job may be deleted (0: none)")
	fs.DurationVar(&o.FinishedRunGrace, "finished-run-grace", o.FinishedRunGrace, "How long a flow run may be finished in Prefect (set Failed, Success or Cancelled by someone else) while its pod still runs before the agent deletes its Job")
	o.Guardrails.AddFlags(fs)
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect one leader among replicas with a Lease; only the leader submits and manages Jobs")
	fs.StringVar(&o.LeaseName, "lease-name", "", "Name of the leader election Lease (default kubectl-prefect-<agent name>)")
	fs.BoolVar(&o.Profiling, "profiling", false, "Serve Go's /debug/pprof on the --agent-address server")
	fs.Float32Var(&o.KubeQPS, "kube-api-qps", o.KubeQPS, "Sustained requests per second to the Kubernetes API")
	fs.IntVar(&o.KubeBurst, "kube-api-burst", o.KubeBurst, "Requests the agent may send to the Kubernetes API at once above --kube-api-qps")
}

// Complete reads the environment fallbacks of the flags not given.
func (o *StartOptions) Complete(fs *pflag.FlagSet) error {
	if err := o.Settings.Complete(fs); err != nil {
		return err
	}
	if err := applyEnvFallbacks(fs, StartEnvFallbacks); err != nil {
		return err
	}
	if err := o.Templates.Complete(fs, o.Settings.JobTemplate); err != nil {
		return err
	}
	if err := o.Guardrails.Complete(fs); err != nil {
		return err
	}
	address, err := listenAddress(o.AgentAddress)
	if err != nil {
		return err
	}
	o.address = address
	return nil
}

// Validate checks the flags before anything starts.
func (o *StartOptions) Validate() error {
	if err := o.Settings.Validate(); err != nil {
		return err
	}
	if o.MaxPolls < 0 {
		return fmt.Errorf("--max-polls %d: expected 0 (no limit) or more", o.MaxPolls)
	}
	if o.FailedPodLogLines < 0 {
		return fmt.Errorf("--failed-pod-log-lines %d: expected 0 (none) or more", o.FailedPodLogLines)
	}
	if o.FinishedRunGrace <= 0 {
		return fmt.Errorf("--finished-run-grace %s: expected a positive duration such as 2m", o.FinishedRunGrace)
	}
	if o.Concurrency < 1 {
		return fmt.Errorf("--concurrency %d: expected 1 or more", o.Concurrency)
	}
	if err := o.Templates.Validate(); err != nil {
		return err
	}
	if err := o.Pending.Validate(); err != nil {
		return err
	}
	if err := o.Guardrails.Validate(); err != nil {
		return err
	}
	if o.LeaseName != "" {
		if errs := validation.IsDNS1123Subdomain(o.LeaseName); len(errs) > 0 {
			return fmt.Errorf("--lease-name %q: %s", o.LeaseName, strings.Join(errs, "; "))
		}
	}
	if o.KubeQPS <= 0 || o.KubeBurst < 1 {
		return fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive (got %v and %d)", o.KubeQPS, o.KubeBurst)
	}
	return nil
}

// Connection is how a binary reaches Kubernetes: the plugin through
// kubectl's flags (cli-runtime), prefect-agent through client-go's loader.
type Connection interface {
	// ToNamespace is where the agent creates Jobs.
	ToNamespace() (string, error)
	// ToRESTConfig is the connection to the API server.
	ToRESTConfig() (*rest.Config, error)
}

// AgentConfig builds the agent's configuration. The connection is copied and
// given the agent's client limits, user agent and protobuf.
func (o *StartOptions) AgentConfig(ctx context.Context, conn Connection) (agentpkg.Config, error) {
	ns, err := conn.ToNamespace()
	if err != nil {
		return agentpkg.Config{}, err
	}
	settings := o.Settings.ToSettings(ns)
	warnings, err := o.Templates.Apply(ctx, &settings)
	if err != nil {
		return agentpkg.Config{}, err
	}
	for _, w := range warnings {
		klog.FromContext(ctx).Info("The agent's job template has fields a Job does not have; they are dropped", "warning", w)
	}
	restConfig, err := conn.ToRESTConfig()
	if err != nil {
		return agentpkg.Config{}, fmt.Errorf("connecting to Kubernetes: %w", err)
	}
	cfg := rest.CopyConfig(restConfig)
	cfg.QPS, cfg.Burst = o.KubeQPS, o.KubeBurst
	cfg.UserAgent = "kubectl-prefect-agent"
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kubeRequests := agentpkg.NewKubeRequestCounter()
	cfg.Wrap(kubeRequests.Wrap)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return agentpkg.Config{}, err
	}
	retryLog := klog.FromContext(ctx).V(1)
	client := prefect.NewClient(prefect.Config{API: o.Settings.API, APIKey: o.Settings.Key, TenantID: o.Settings.TenantID,
		OnRetry: func(op string, attempt int, err error) {
			retryLog.Info("Prefect API request failed; retrying", "operation", op, "attempt", attempt, "err", err.Error())
		}})
	manage := agentjobs.Config{AllNamespaces: o.WatchAllNamespaces, DeleteFinishedJobs: o.DeleteFinishedJobs, KeepFailedJobs: o.KeepFailedJobs}
	o.Pending.apply(&manage)
	manage.FailedPodLogLines, manage.FinishedRunGrace = o.FailedPodLogLines, o.FinishedRunGrace
	if o.FailedPodLogLines == 0 {
		manage.FailedPodLogLines = -1
	}
	config := agentpkg.Config{
		Prefect: client, Kube: kube, Backend: o.Settings.Backend, Name: o.Settings.AgentName,
		Labels: settings.Labels, Job: settings, MaxPolls: o.MaxPolls, Concurrency: o.Concurrency,
		HealthAddress: o.address, Profiling: o.Profiling, ShutdownTimeout: ShutdownTimeout, KubeRequests: kubeRequests,
		Manage:         manage,
		LeaderElection: o.leaderElection(ns),
	}
	o.Guardrails.apply(&config)
	return config, nil
}

// Run tells the Go runtime the container's memory limit and the agent's GC
// target, then runs the agent until ctx ends (the signal handler's context)
// or --max-polls is reached.
func (o *StartOptions) Run(ctx context.Context, conn Connection) error {
	if limit, source := memlimit.Set(); limit > 0 {
		klog.FromContext(ctx).V(1).Info("Go memory limit", "bytes", limit, "from", source)
	}
	if memlimit.SetGCPercent() {
		klog.FromContext(ctx).V(1).Info("Go GC target", "GOGC", memlimit.GCPercent)
	}
	cfg, err := o.AgentConfig(ctx, conn)
	if err != nil {
		return err
	}
	lease := ""
	if cfg.LeaderElection != nil {
		lease = cfg.LeaderElection.LeaseName
	}
	if err := agentpkg.CheckPermissions(ctx, cfg.Kube, cfg.Job.Namespace, o.WatchAllNamespaces, lease); err != nil {
		return err
	}
	if o.Settings.Key != "" && o.Settings.KeySecretName == "" {
		klog.FromContext(ctx).Info("Flow run Jobs carry the API key as a plain value in their spec, as 1.4.1's did: anyone who can read Jobs can read it. " +
			"Put it in a Secret (kubectl create secret generic prefect-api-key --from-literal=api-key=...) and start with --key-secret-name prefect-api-key, " +
			"or install the agent with `kubectl prefect agent install`, which does that")
	}
	a, err := agentpkg.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// leaderElection is the Lease configuration with --leader-elect, else nil.
func (o *StartOptions) leaderElection(ns string) *agentpkg.LeaderElection {
	if !o.LeaderElect {
		return nil
	}
	name := o.LeaseName
	if name == "" {
		name = LeaseNameFor(o.Settings.AgentName)
	}
	host, _ := os.Hostname()
	return &agentpkg.LeaderElection{LeaseName: name, Namespace: ns, Identity: host + "_" + string(uuid.NewUUID())}
}

// LeaseNameFor turns an agent name into a valid Lease name, the default of --lease-name.
func LeaseNameFor(agentName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(agentName) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	name := strings.Trim("kubectl-prefect-"+b.String(), "-.")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-.")
	}
	return name
}

// listenAddress accepts the original's URL form (http://:8080) or host:port.
func listenAddress(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	hostport := addr
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return "", fmt.Errorf("--agent-address %q: %w", addr, err)
		}
		hostport = u.Host
	}
	if _, port, err := net.SplitHostPort(hostport); err != nil || port == "" {
		return "", fmt.Errorf("--agent-address %q: a port is required, e.g. http://:8080 or 0.0.0.0:8080", addr)
	}
	return hostport, nil
}
