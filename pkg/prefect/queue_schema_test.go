package prefect

import "testing"

// TestQueueOperationsValidate checks the agent's own search for due runs
// against the full Prefect schema and the project's copy.
func TestQueueOperationsValidate(t *testing.T) {
	checkOperations(t, "queue.graphql", "DueFlowRuns")
}
