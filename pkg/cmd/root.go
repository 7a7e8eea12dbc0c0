// Package cmd holds the commands of `kubectl prefect`.
package cmd

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd/logs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd/runs"
)

// NewCmdPrefect is the root command, `kubectl prefect`.
func NewCmdPrefect(streams genericiooptions.IOStreams) *cobra.Command {
	configFlags := genericclioptions.NewConfigFlags(true).WithWarningPrinter(streams).WithDiscoveryBurst(300).WithDiscoveryQPS(50.0)
	root := &cobra.Command{
		Use:   "kubectl-prefect",
		Short: "Run Prefect 1 flow runs as Kubernetes Jobs",
		Long: `kubectl prefect runs Prefect 1 flow runs as Kubernetes Jobs.

It is a drop-in replacement for the Prefect 1 Kubernetes agent: the same flags,
environment variables and Job contents, watched Jobs, and an installer that
keeps the API key in a Secret.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl prefect"},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	configFlags.AddFlags(root.PersistentFlags())
	agentcli.AddKlogFlags(root.PersistentFlags())
	root.AddCommand(agent.NewCmdAgent(configFlags, streams))
	root.AddCommand(jobs.NewCmdJobs(configFlags, streams))
	root.AddCommand(runs.NewCmdRuns(configFlags, streams))
	root.AddCommand(logs.NewCmdLogs(configFlags, streams))
	root.AddCommand(NewCmdVersion(configFlags, streams))
	registerCompletions(root, configFlags)
	return root
}
