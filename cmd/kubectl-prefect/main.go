// Command kubectl-prefect is the kubectl plugin `kubectl prefect`: it runs
// Prefect 1 flow runs as Kubernetes Jobs.
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // cloud providers' kubeconfig auth

	"github.com/kubectl-prefect/kubectl-prefect/internal/signals"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd"
)

// main runs the command on the signal handler's context: a first SIGINT or
// SIGTERM stops it gracefully, a second one exits at once.
func main() {
	ctx, stop := signals.Context(context.Background(), os.Stderr)
	root := cmd.NewCmdPrefect(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
