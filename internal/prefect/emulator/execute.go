package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
)

// object resolves the fields of one GraphQL object value. args holds the
// field's arguments with variables already substituted.
type object func(field string, args map[string]any) (any, error)

// fieldError is a resolver error that carries a GraphQL error code.
type fieldError struct {
	code    string
	message string
}

func (e *fieldError) Error() string { return e.message }

// serverError is an error the real server answers with its own wording.
func serverError(format string, args ...any) error {
	return errorWithCode("INTERNAL_SERVER_ERROR", format, args...)
}

func errorWithCode(code, format string, args ...any) error {
	return &fieldError{code: code, message: fmt.Sprintf(format, args...)}
}

// gqlError is one entry of a response's "errors" array.
type gqlError struct {
	Message    string         `json:"message"`
	Locations  []gqlLocation  `json:"locations,omitempty"`
	Path       []any          `json:"path,omitempty"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

type gqlLocation struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// orderedObject keeps response keys in selection order, as GraphQL requires.
type orderedObject []keyValue

type keyValue struct {
	key   string
	value any
}

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, kv := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(kv.key)
		buf.Write(k)
		buf.WriteByte(':')
		v, err := json.Marshal(kv.value)
		if err != nil {
			return nil, err
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// executor runs one validated operation against resolver objects.
type executor struct {
	schema *ast.Schema
	doc    *ast.QueryDocument
	vars   map[string]any
	errors []gqlError
}

func (e *executor) run(op *ast.OperationDefinition, root object) orderedObject {
	rootType := e.schema.Query
	if op.Operation == ast.Mutation {
		rootType = e.schema.Mutation
	}
	return e.selectionSet(rootType, op.SelectionSet, root, nil)
}

func (e *executor) collect(set ast.SelectionSet, into []*ast.Field) []*ast.Field {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			into = append(into, s)
		case *ast.InlineFragment:
			into = e.collect(s.SelectionSet, into)
		case *ast.FragmentSpread:
			if f := e.doc.Fragments.ForName(s.Name); f != nil {
				into = e.collect(f.SelectionSet, into)
			}
		}
	}
	return into
}

func (e *executor) selectionSet(typ *ast.Definition, set ast.SelectionSet, obj object, path []any) orderedObject {
	var out orderedObject
	for _, f := range e.collect(set, nil) {
		fieldPath := append(append([]any{}, path...), f.Alias)
		if f.Name == "__typename" {
			out = append(out, keyValue{f.Alias, typ.Name})
			continue
		}
		v, err := obj(f.Name, f.ArgumentMap(e.vars))
		if err != nil {
			e.addError(f, fieldPath, err)
			out = append(out, keyValue{f.Alias, nil})
			continue
		}
		out = append(out, keyValue{f.Alias, e.complete(f.Definition.Type, f.SelectionSet, v, fieldPath)})
	}
	return out
}

func (e *executor) complete(t *ast.Type, set ast.SelectionSet, v any, path []any) any {
	if v == nil {
		return nil
	}
	if t.Elem != nil {
		items, _ := v.([]any)
		out := make([]any, 0, len(items))
		for i, item := range items {
			out = append(out, e.complete(t.Elem, set, item, append(append([]any{}, path...), i)))
		}
		return out
	}
	def := e.schema.Types[t.NamedType]
	switch def.Kind {
	case ast.Object:
		obj, ok := v.(object)
		if !ok {
			e.errors = append(e.errors, gqlError{Message: fmt.Sprintf("emulator: no resolver for %s", def.Name), Path: path})
			return nil
		}
		return e.selectionSet(def, set, obj, path)
	default:
		if ts, ok := v.(time.Time); ok {
			return formatTime(ts)
		}
		return v
	}
}

func (e *executor) addError(f *ast.Field, path []any, err error) {
	code := "INTERNAL_SERVER_ERROR"
	if fe, ok := err.(*fieldError); ok {
		code = fe.code
	}
	ge := gqlError{Message: err.Error(), Path: path, Extensions: map[string]any{"code": code}}
	if f.Position != nil {
		ge.Locations = []gqlLocation{{Line: f.Position.Line, Column: f.Position.Column}}
	}
	e.errors = append(e.errors, ge)
}

// formatTime renders a timestamp the way Hasura and the Python service do.
func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.999999-07:00")
}
