package prefect

import (
	"testing"
)

// TestManageOperationsValidate checks job management's operations against
// the full Prefect schema and the project's copy.
func TestManageOperationsValidate(t *testing.T) {
	checkOperations(t, "manage.graphql", "CancelledRunsSince")
}
