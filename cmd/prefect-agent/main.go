// Command prefect-agent is the agent the image runs: `kubectl prefect agent
// start` with the same flags and environment variables, built on client-go
// alone (no cli-runtime, printers, kustomize or install path), so it is a
// fraction of the plugin's size and memory.
package main

import (
	"context"
	"fmt"
	"os"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // cloud providers' kubeconfig auth, as the plugin has

	"github.com/kubectl-prefect/kubectl-prefect/internal/signals"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
)

func main() {
	ctx, stop := signals.Context(context.Background(), os.Stderr)
	cmd := agentcli.NewCmdPrefectAgent(os.Stdout, os.Stderr)
	cmd.SetArgs(agentcli.TrimLegacyArgs(os.Args[1:]))
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
