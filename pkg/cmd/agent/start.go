package agent

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"

	agentjobs "github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
)

// StartOptions are the options of `kubectl prefect agent start`: the agent's
// own (pkg/agentcli, shared with the prefect-agent binary) and kubectl's
// connection flags.
type StartOptions struct {
	*agentcli.StartOptions
	configFlags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
}

// NewStartOptions returns start's options with their defaults.
func NewStartOptions(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *StartOptions {
	return &StartOptions{StartOptions: agentcli.NewStartOptions(), configFlags: configFlags, IOStreams: streams}
}

// NewCmdStart is `kubectl prefect agent start`.
func NewCmdStart(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := NewStartOptions(configFlags, streams)
	cmd := &cobra.Command{
		Use:   "start",
		Short: agentcli.StartShort,
		Long:  agentcli.StartShort + ".\n\n" + agentjobs.PendingPolicyHelp(),
		Example: `  # Against Prefect Server, Jobs in namespace flows
  kubectl prefect agent start --backend server --api http://prefect-server:4200 -n flows -l k8s

  # Against Prefect Cloud 1, the key from the environment
  PREFECT__CLOUD__API_KEY=... kubectl prefect agent start -l k8s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd.Flags()); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Run connects to Kubernetes with kubectl's flags and runs the agent until stopped.
func (o *StartOptions) Run(cmd *cobra.Command) error {
	return o.StartOptions.Run(cmd.Context(), kubectlConnection{o.configFlags})
}

// kubectlConnection reaches Kubernetes through kubectl's flags.
type kubectlConnection struct {
	configFlags *genericclioptions.ConfigFlags
}

func (c kubectlConnection) ToNamespace() (string, error)        { return namespace(c.configFlags) }
func (c kubectlConnection) ToRESTConfig() (*rest.Config, error) { return c.configFlags.ToRESTConfig() }
