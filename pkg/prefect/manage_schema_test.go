package prefect

import (
	"testing"
)

// TestManageOperationsValidate checks job management's operations against
// the full Prefect schema and the project's copy.
func TestManageOperationsValidate(t *testing.T) {
	checkOperations(t, "manage.graphql", "EndedRunsSince")
}

// TestObserveOperationsValidate checks the plugin's read-only operations
// against the full Prefect schema and the project's copy.
func TestObserveOperationsValidate(t *testing.T) {
	checkOperations(t, "observe.graphql", "RunsOverview RunLogs RunsNamed")
}
