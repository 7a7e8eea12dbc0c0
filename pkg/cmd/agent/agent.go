// Package agent holds `kubectl prefect agent` and its subcommands.
package agent

import (
	"os"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// NewCmdAgent is `kubectl prefect agent`.
func NewCmdAgent(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run, render or install the Prefect Kubernetes agent",
	}
	cmd.AddCommand(NewCmdStart(configFlags, streams))
	cmd.AddCommand(NewCmdRender(configFlags, streams))
	cmd.AddCommand(NewCmdInstall(configFlags, streams))
	cmd.AddCommand(NewCmdUninstall(configFlags, streams))
	return cmd
}

// namespace is -n, else NAMESPACE (the original agent's variable), else the
// kubeconfig context's namespace, else the pod's own when in a cluster.
func namespace(configFlags *genericclioptions.ConfigFlags) (string, error) {
	if configFlags.Namespace != nil && *configFlags.Namespace != "" {
		return *configFlags.Namespace, nil
	}
	if ns := os.Getenv("NAMESPACE"); ns != "" {
		return ns, nil
	}
	ns, _, err := configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", err
	}
	return ns, nil
}
