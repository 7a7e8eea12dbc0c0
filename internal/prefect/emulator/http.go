package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/validator"
)

type graphQLRequest struct {
	Query         string          `json:"query"`
	OperationName string          `json:"operationName"`
	Variables     json.RawMessage `json:"variables"`
}

// requestInfo is what resolvers need to know about the HTTP request.
type requestInfo struct {
	tenantID    string // the API key's tenant (Cloud)
	agentID     string
	coreVersion string
	replica     int // the GraphQL replica that serves the request
}

func (e *Emulator) serveGraphQL(w http.ResponseWriter, r *http.Request) {
	if e.faults.refusing() {
		e.faults.count(faultRefused)
		dropConnection(w)
		return
	}
	fault, hold, delay := e.faults.draw()
	if e.faults.before(w, r, fault, hold, delay) {
		return
	}
	var req graphQLRequest
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		writeErrors(w, http.StatusBadRequest, "BAD_REQUEST", "POST body must be a JSON object with a query: "+err.Error(), nil)
		return
	}
	vars, err := decodeVariables(req.Variables)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "BAD_USER_INPUT", "variables must be a JSON object: "+err.Error(), nil)
		return
	}
	doc, errs := gqlparser.LoadQueryWithRules(e.schema, req.Query, nil)
	if len(errs) > 0 {
		writeValidationErrors(w, errs)
		return
	}
	op := pickOperation(doc, req.OperationName)
	if op == nil {
		writeErrors(w, http.StatusBadRequest, "GRAPHQL_VALIDATION_FAILED", "the document must name exactly one operation to run (operationName)", nil)
		return
	}
	if e.backend == Server {
		if f := findField(op.SelectionSet, "auth_info"); f != nil {
			writeErrors(w, http.StatusBadRequest, "GRAPHQL_VALIDATION_FAILED", `Cannot query field "auth_info" on type "Query".`, f.Position)
			return
		}
	}
	coerced, verr := validator.VariableValues(e.schema, op, vars)
	if verr != nil {
		writeErrors(w, http.StatusBadRequest, "BAD_USER_INPUT", verr.Error(), nil)
		return
	}
	e.countRequest(op)

	info := requestInfo{agentID: r.Header.Get("X-Prefect-Agent-Id"), coreVersion: r.Header.Get("X-Prefect-Core-Version")}
	if e.backend == Cloud {
		tenant, ok := e.authenticate(r)
		if !ok {
			writeJSON(w, http.StatusOK, map[string]any{"data": nil, "errors": []gqlError{{
				Message:    "AuthenticationError: Forbidden",
				Path:       []any{firstFieldName(op)},
				Extensions: map[string]any{"code": "UNAUTHENTICATED"},
			}}})
			return
		}
		info.tenantID = tenant
	}

	if d := e.faults.holdFor(op, coerced, info.agentID); d > 0 {
		// Applied after the hold even when the client gave up meanwhile, as
		// a request a proxy has already forwarded is.
		e.faults.count(faultHeld)
		time.Sleep(d)
		defer e.faults.count(faultHeldApplied)
	}
	if fault == faultGateway {
		writeGatewayError(w, op, false)
		return
	}

	// Each operation runs whole under the lock, so it sees and leaves one
	// consistent state, as a database transaction would.
	// The answer is encoded under the lock too: it may hold the store's values.
	ex := &executor{schema: e.schema, doc: doc, vars: coerced}
	var data orderedObject
	e.mu.Lock()
	info.replica = e.pickReplica()
	if op.Operation == ast.Mutation {
		data = ex.run(op, e.mutationRoot(info))
	} else {
		data = ex.run(op, e.queryRoot(info))
	}
	resp := map[string]any{"data": data}
	if len(ex.errors) > 0 {
		resp["errors"] = ex.errors
	}
	body, err := json.Marshal(resp)
	e.mu.Unlock()
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "encoding the answer: "+err.Error(), nil)
		return
	}
	if fault == faultApplyGate {
		writeGatewayError(w, op, true)
		return
	}
	if e.faults.after(w, r, fault, hold) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}

// authenticate checks the bearer key; it returns the key's tenant.
func (e *Emulator) authenticate(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	key, found := strings.CutPrefix(auth, "Bearer ")
	if !found || key == "" {
		return "", false
	}
	tenant, ok := e.apiKeys[key]
	if !ok {
		return "", false
	}
	if t := r.Header.Get("X-Prefect-Tenant-Id"); t != "" && t != tenant {
		return "", false
	}
	return tenant, true
}

func decodeVariables(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return map[string]any{}, nil
	}
	// The Python client sends the variables as a JSON-encoded string.
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		raw = []byte(s)
		if strings.TrimSpace(s) == "null" {
			return map[string]any{}, nil
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var vars map[string]any
	if err := dec.Decode(&vars); err != nil {
		return nil, err
	}
	if vars == nil {
		vars = map[string]any{}
	}
	return vars, nil
}

func pickOperation(doc *ast.QueryDocument, name string) *ast.OperationDefinition {
	if name != "" {
		return doc.Operations.ForName(name)
	}
	if len(doc.Operations) == 1 {
		return doc.Operations[0]
	}
	return nil
}

func findField(set ast.SelectionSet, name string) *ast.Field {
	for _, sel := range set {
		if f, ok := sel.(*ast.Field); ok && f.Name == name {
			return f
		}
	}
	return nil
}

func firstFieldName(op *ast.OperationDefinition) string {
	for _, sel := range op.SelectionSet {
		if f, ok := sel.(*ast.Field); ok {
			return f.Name
		}
	}
	return ""
}

func (e *Emulator) countRequest(op *ast.OperationDefinition) {
	name := op.Name
	if name == "" {
		name = firstFieldName(op)
	}
	e.mu.Lock()
	e.requests[name]++
	e.mu.Unlock()
}

func writeValidationErrors(w http.ResponseWriter, errs gqlerror.List) {
	out := make([]gqlError, 0, len(errs))
	for _, err := range errs {
		code := "GRAPHQL_VALIDATION_FAILED"
		if err.Rule == "" {
			code = "GRAPHQL_PARSE_FAILED"
		}
		ge := gqlError{Message: err.Message, Extensions: map[string]any{"code": code}}
		for _, l := range err.Locations {
			ge.Locations = append(ge.Locations, gqlLocation{Line: l.Line, Column: l.Column})
		}
		out = append(out, ge)
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{"errors": out})
}

func writeErrors(w http.ResponseWriter, status int, code, message string, pos *ast.Position) {
	ge := gqlError{Message: message, Extensions: map[string]any{"code": code}}
	if pos != nil {
		ge.Locations = []gqlLocation{{Line: pos.Line, Column: pos.Column}}
	}
	writeJSON(w, status, map[string]any{"errors": []gqlError{ge}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
