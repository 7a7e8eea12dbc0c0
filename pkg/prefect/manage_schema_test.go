package prefect

import (
	"os"
	"testing"

	"github.com/vektah/gqlparser/v2"
)

// TestManageOperationsValidate checks job management's operations against
// the full Prefect schema and the project's copy.
func TestManageOperationsValidate(t *testing.T) {
	full, err := os.ReadFile(sharedSchemaPath(t))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile("manage.graphql")
	if err != nil {
		t.Fatal(err)
	}
	for name, sdl := range map[string]string{"full schema": string(full), "project copy": Schema} {
		doc, errs := gqlparser.LoadQueryWithRules(loadSchema(t, name, sdl), string(ops), nil)
		if len(errs) > 0 {
			t.Fatalf("manage.graphql does not validate against the %s: %v", name, errs)
		}
		if len(doc.Operations) != 1 || doc.Operations[0].Name != "CancelledRunsSince" {
			t.Fatalf("manage.graphql holds %d operations, want CancelledRunsSince", len(doc.Operations))
		}
	}
}
