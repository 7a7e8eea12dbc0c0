package prefect

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// sharedSchemaPath is the Prefect backend's full schema beside the project.
func sharedSchemaPath(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "prefect-server", "schema.graphql")
	if _, err := os.Stat(p); err != nil {
		if testing.Short() {
			t.Skipf("-short: no full Prefect schema at %s (the project's ../shared)", p)
		}
		t.Fatalf("the full Prefect schema is expected at %s (the project's ../shared): %v", p, err)
	}
	return p
}

func loadSchema(t *testing.T, name, sdl string) *ast.Schema {
	t.Helper()
	s, err := gqlparser.LoadSchema(&ast.Source{Name: name, Input: sdl})
	if err != nil {
		t.Fatalf("%s does not load: %v", name, err)
	}
	return s
}

// checkOperations validates the operations in file against the full Prefect
// schema and the project's copy and wants them to be, in order, the
// space-separated names in want.
func checkOperations(t *testing.T, file, want string) {
	t.Helper()
	full, err := os.ReadFile(sharedSchemaPath(t))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for name, sdl := range map[string]string{"full schema": string(full), "project copy": Schema} {
		doc, errs := gqlparser.LoadQueryWithRules(loadSchema(t, name, sdl), string(ops), nil)
		if len(errs) > 0 {
			t.Fatalf("%s does not validate against the %s: %v", file, name, errs)
		}
		var names []string
		for _, op := range doc.Operations {
			names = append(names, op.Name)
		}
		if got := strings.Join(names, " "); got != want {
			t.Fatalf("%s holds %q, want %q", file, got, want)
		}
	}
}

func TestOperationsValidateAgainstFullSchema(t *testing.T) {
	checkOperations(t, "operations.graphql", "Hello DefaultServerTenant AuthInfoTenant RegisterAgent GetRunsInQueue FlowRunsToSubmit StrandedFlowRunCandidates StrandedFlowRun SetFlowRunStates SetTaskRunStates WriteRunLogs FlowRunStates FlowRunHistory UpdateFlowRunHeartbeat")
}

// TestSchemaCopyIsPartOfFullSchema checks that everything the project's copy
// declares exists with the same type in the full schema, and that the copy
// leaves out nothing the full schema requires, so a request the emulator
// accepts is one the real gateway accepts.
func TestSchemaCopyIsPartOfFullSchema(t *testing.T) {
	raw, err := os.ReadFile(sharedSchemaPath(t))
	if err != nil {
		t.Fatal(err)
	}
	full := loadSchema(t, "full schema", string(raw))
	copy := loadSchema(t, "project copy", Schema)
	for name, def := range copy.Types {
		if def.BuiltIn {
			continue
		}
		fdef := full.Types[name]
		if fdef == nil {
			t.Errorf("type %s is not in the full schema", name)
			continue
		}
		if fdef.Kind != def.Kind {
			t.Errorf("type %s is %s here but %s in the full schema", name, def.Kind, fdef.Kind)
			continue
		}
		for _, v := range def.EnumValues {
			if fdef.EnumValues.ForName(v.Name) == nil {
				t.Errorf("enum value %s.%s is not in the full schema", name, v.Name)
			}
		}
		for _, f := range def.Fields {
			if len(f.Name) > 2 && f.Name[:2] == "__" {
				continue
			}
			ff := fdef.Fields.ForName(f.Name)
			if ff == nil {
				t.Errorf("field %s.%s is not in the full schema", name, f.Name)
				continue
			}
			if ff.Type.String() != f.Type.String() {
				t.Errorf("field %s.%s is %s here but %s in the full schema", name, f.Name, f.Type, ff.Type)
			}
			for _, a := range f.Arguments {
				fa := ff.Arguments.ForName(a.Name)
				if fa == nil || fa.Type.String() != a.Type.String() {
					t.Errorf("argument %s.%s(%s: %s) differs from the full schema", name, f.Name, a.Name, a.Type)
				}
			}
			for _, fa := range ff.Arguments {
				if fa.Type.NonNull && fa.DefaultValue == nil && f.Arguments.ForName(fa.Name) == nil {
					t.Errorf("required argument %s.%s(%s) is missing here", name, f.Name, fa.Name)
				}
			}
		}
		if def.Kind == ast.InputObject {
			for _, ff := range fdef.Fields {
				if ff.Type.NonNull && ff.DefaultValue == nil && def.Fields.ForName(ff.Name) == nil {
					t.Errorf("required input field %s.%s is missing here", name, ff.Name)
				}
			}
		}
	}
}
