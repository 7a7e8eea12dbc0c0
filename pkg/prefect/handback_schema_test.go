package prefect

import "testing"

// TestHandBackOperationsValidate checks the hand-back's operations against
// the full Prefect schema and the project's copy.
func TestHandBackOperationsValidate(t *testing.T) {
	checkOperations(t, "handback.graphql", "RunningTaskRuns")
}
