// Command prefect-emulator serves the in-memory Prefect 1 API emulator, for
// the demo and for trying the agent without a Prefect Server.
//
//	prefect-emulator --addr 127.0.0.1:4200 --runs runs.json
//
// GraphQL is served at / (as Prefect Server's gateway), the control API under
// /emulator/: POST /emulator/flow-runs schedules runs (one spec or a list),
// GET /emulator/flow-runs[/ID] reads them back with their states and logs,
// POST /emulator/flow-runs/ID/cancel cancels one as the UI does. It follows
// Prefect Server: a 30 s Submitted lock per GraphQL replica (--replicas),
// Lazarus and the zombie killer on Server's periods unless told otherwise.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kubectl-prefect/kubectl-prefect/internal/signals"
)

func main() {
	ctx, stop := signals.Context(context.Background(), os.Stderr)
	err := newCommand(os.Stdout).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
