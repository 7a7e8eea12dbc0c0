package agent

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	agentpkg "github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// StartOptions are the options of `kubectl prefect agent start`.
type StartOptions struct {
	configFlags *genericclioptions.ConfigFlags
	Settings    SettingsFlags
	Templates   TemplateFlags

	MaxPolls           int
	AgentAddress       string
	DeleteFinishedJobs bool
	Concurrency        int
	KubeQPS            float32
	KubeBurst          int
	KeepFailedJobs     bool
	WatchAllNamespaces bool
	Pending            PendingFlags
	LeaderElect        bool
	LeaseName          string
	Profiling          bool

	address string
	genericiooptions.IOStreams
}

// startEnvFallbacks are start's own flags' environment variables.
var startEnvFallbacks = map[string][]string{
	"agent-address":        {"PREFECT__CLOUD__AGENT__AGENT_ADDRESS"},
	"delete-finished-jobs": {"DELETE_FINISHED_JOBS"},
}

// NewStartOptions returns start's options with their defaults.
func NewStartOptions(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *StartOptions {
	return &StartOptions{configFlags: configFlags, DeleteFinishedJobs: true, Concurrency: 32, KubeQPS: 100, KubeBurst: 200, IOStreams: streams}
}

// NewCmdStart is `kubectl prefect agent start`.
func NewCmdStart(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := NewStartOptions(configFlags, streams)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run the agent: poll Prefect for flow runs and run each as a Kubernetes Job",
		Long:  "Run the agent: poll Prefect for flow runs and run each as a Kubernetes Job.\n\n" + agentpkg.PendingPolicyHelp(),
		Example: `  # Against Prefect Server, Jobs in namespace flows
  kubectl prefect agent start --backend server --api http://prefect-server:4200 -n flows -l k8s

  # Against Prefect Cloud 1, the key from the environment
  PREFECT__CLOUD__API_KEY=... kubectl prefect agent start -l k8s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd)
		},
	}
	o.Settings.AddFlags(cmd.Flags())
	o.Templates.AddFlags(cmd.Flags())
	cmd.Flags().IntVar(&o.MaxPolls, "max-polls", 0, "Stop after this many polls (0: run until stopped)")
	cmd.Flags().StringVar(&o.AgentAddress, "agent-address", "", "Address of the agent's HTTP server for /api/health and /api/poke, e.g. http://:8080 [PREFECT__CLOUD__AGENT__AGENT_ADDRESS]")
	cmd.Flags().BoolVar(&o.DeleteFinishedJobs, "delete-finished-jobs", true, "Delete Jobs once they finish [DELETE_FINISHED_JOBS]")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", o.Concurrency, "How many flow runs may be submitted at once")
	cmd.Flags().BoolVar(&o.KeepFailedJobs, "keep-failed-jobs", false, "Keep failed Jobs for inspection while deleting succeeded ones")
	cmd.Flags().BoolVar(&o.WatchAllNamespaces, "watch-all-namespaces", false, "Manage the agent's Jobs in every namespace, not only the one it creates Jobs in")
	o.Pending.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.LeaderElect, "leader-elect", false, "Elect one leader among replicas with a Lease; only the leader submits and manages Jobs")
	cmd.Flags().StringVar(&o.LeaseName, "lease-name", "", "Name of the leader election Lease (default kubectl-prefect-<agent name>)")
	cmd.Flags().BoolVar(&o.Profiling, "profiling", false, "Serve Go's /debug/pprof on the --agent-address server")
	cmd.Flags().Float32Var(&o.KubeQPS, "kube-api-qps", o.KubeQPS, "Sustained requests per second to the Kubernetes API")
	cmd.Flags().IntVar(&o.KubeBurst, "kube-api-burst", o.KubeBurst, "Requests the agent may send to the Kubernetes API at once above --kube-api-qps")
	return cmd
}

// Complete reads environment fallbacks and resolves the namespace.
func (o *StartOptions) Complete(cmd *cobra.Command) error {
	if err := o.Settings.Complete(cmd.Flags()); err != nil {
		return err
	}
	if err := applyEnvFallbacks(cmd.Flags(), startEnvFallbacks); err != nil {
		return err
	}
	if err := o.Templates.Complete(cmd.Flags()); err != nil {
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
	if err := o.Templates.Validate(o.Settings.JobTemplate); err != nil {
		return err
	}
	if o.MaxPolls < 0 {
		return fmt.Errorf("--max-polls %d: expected 0 (no limit) or more", o.MaxPolls)
	}
	if o.Concurrency < 1 {
		return fmt.Errorf("--concurrency %d: expected 1 or more", o.Concurrency)
	}
	if err := o.Pending.Validate(); err != nil {
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

// Run connects to Kubernetes and Prefect and runs the agent until stopped.
func (o *StartOptions) Run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	ns, err := namespace(o.configFlags)
	if err != nil {
		return err
	}
	settings := o.Settings.ToSettings(ns)
	warnings, err := o.Templates.Apply(ctx, &settings, o.Settings.JobTemplate)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		klog.FromContext(ctx).Info("WARNING: " + w)
	}
	restConfig, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("connecting to Kubernetes: %w", err)
	}
	restConfig.QPS, restConfig.Burst = o.KubeQPS, o.KubeBurst
	restConfig.UserAgent = "kubectl-prefect-agent"
	restConfig.ContentType = "application/vnd.kubernetes.protobuf"
	restConfig.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kubeRequests := agentpkg.NewKubeRequestCounter()
	restConfig.Wrap(kubeRequests.Wrap)
	kube, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	if err := checkPermissions(ctx, kube, ns, o.WatchAllNamespaces, o.LeaderElect); err != nil {
		return err
	}
	retryLog := klog.FromContext(ctx).V(1)
	client := prefect.NewClient(prefect.Config{API: o.Settings.API, APIKey: o.Settings.Key, TenantID: o.Settings.TenantID,
		OnRetry: func(op string, attempt int, err error) {
			retryLog.Info("Prefect API request failed; retrying", "operation", op, "attempt", attempt, "err", err.Error())
		}})
	manage := agentpkg.ManageConfig{AllNamespaces: o.WatchAllNamespaces, DeleteFinishedJobs: o.DeleteFinishedJobs, KeepFailedJobs: o.KeepFailedJobs}
	o.Pending.apply(&manage)
	a, err := agentpkg.New(agentpkg.Config{
		Prefect: client, Kube: kube, Backend: o.Settings.Backend, Name: o.Settings.AgentName,
		Labels: settings.Labels, Job: settings, MaxPolls: o.MaxPolls, Concurrency: o.Concurrency,
		HealthAddress: o.address, Profiling: o.Profiling, ShutdownTimeout: 30 * time.Second, KubeRequests: kubeRequests,
		Manage:         manage,
		LeaderElection: o.leaderElection(ns),
	})
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
		name = leaseNameFor(o.Settings.AgentName)
	}
	host, _ := os.Hostname()
	return &agentpkg.LeaderElection{LeaseName: name, Namespace: ns, Identity: host + "_" + string(uuid.NewUUID())}
}

// leaseNameFor turns an agent name into a valid Lease name.
func leaseNameFor(agentName string) string {
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
