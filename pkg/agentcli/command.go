package agentcli

import (
	goflag "flag"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/internal/version"
	agentjobs "github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

// NewCmdPrefectAgent is the prefect-agent binary, the one the agent image
// runs: `kubectl prefect agent start` with the same flags and environment
// fallbacks, connecting with client-go alone.
func NewCmdPrefectAgent(out, errOut io.Writer) *cobra.Command {
	o := NewStartOptions()
	kube := &KubeFlags{}
	cmd := &cobra.Command{
		Use:   "prefect-agent",
		Short: StartShort,
		Long: StartShort + `.

prefect-agent is ` + "`kubectl prefect agent start`" + ` built without kubectl's
printers and client machinery, for the agent's image. It takes the same flags
and environment variables.

` + agentjobs.PendingPolicyHelp(),
		Example: `  # Against Prefect Server, Jobs in namespace flows
  prefect-agent --backend server --api http://prefect-server:4200 -n flows -l k8s`,
		Version:       version.Version,
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd.Flags()); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context(), kube)
		},
	}
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	o.AddFlags(cmd.Flags())
	kube.AddFlags(cmd.Flags())
	AddKlogFlags(cmd.Flags())
	return cmd
}

// TrimLegacyArgs drops a leading "agent start": a Deployment made by an older
// `agent install` runs the image with those arguments.
func TrimLegacyArgs(args []string) []string {
	if len(args) >= 2 && args[0] == "agent" && args[1] == "start" {
		return args[2:]
	}
	return args
}

// AddKlogFlags exposes klog's verbosity (-v, --vmodule) and nothing else of it.
func AddKlogFlags(flags *pflag.FlagSet) {
	fs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(fs)
	for _, name := range []string{"v", "vmodule"} {
		flags.AddGoFlag(fs.Lookup(name))
	}
}
