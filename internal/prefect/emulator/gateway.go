package emulator

import (
	"net/http"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
)

// Upstream addresses of Server's gateway (the docker-compose service names;
// services/apollo/src/executors.js reads them from PREFECT_API_URL and
// HASURA_API_URL). Mutations and hello go to the Python GraphQL service,
// table queries to Hasura.
const (
	graphQLServiceURL = "http://graphql:4201/graphql/"
	hasuraURL         = "http://hasura:3000/v1alpha1/graphql"
)

// upstreamOf names the service behind a root field.
func upstreamOf(op *ast.OperationDefinition, field string) string {
	if op.Operation == ast.Mutation || field == "hello" {
		return graphQLServiceURL
	}
	return hasuraURL
}

// writeGatewayError answers as Apollo does when the fetch to a service
// throws: HTTP 200, an INTERNAL_SERVER_ERROR per root field whose message is
// node-fetch's, and each root field null, which makes data itself null when
// the field is non-null. Before applying, the service was unreachable; after
// applying, its connection broke before the answer.
func writeGatewayError(w http.ResponseWriter, op *ast.OperationDefinition, applied bool) {
	reason := "connect ECONNREFUSED 10.96.0.10:4201"
	if applied {
		reason = "socket hang up"
	}
	var errs []gqlError
	data := orderedObject{}
	nullData := false
	for _, sel := range op.SelectionSet {
		f, ok := sel.(*ast.Field)
		if !ok {
			continue
		}
		upstream := upstreamOf(op, f.Name)
		r := reason
		if upstream == hasuraURL && !applied {
			r = "connect ECONNREFUSED 10.96.0.11:3000"
		}
		ge := gqlError{
			Message:    "request to " + upstream + " failed, reason: " + r,
			Path:       []any{f.Alias},
			Extensions: map[string]any{"code": "INTERNAL_SERVER_ERROR"},
		}
		if f.Position != nil {
			ge.Locations = []gqlLocation{{Line: f.Position.Line, Column: f.Position.Column}}
		}
		errs = append(errs, ge)
		data = append(data, keyValue{f.Alias, nil})
		if f.Definition != nil && f.Definition.Type.NonNull {
			nullData = true
		}
	}
	body := map[string]any{"data": data, "errors": errs}
	if nullData {
		body["data"] = nil
	}
	writeJSON(w, http.StatusOK, body)
}

// holdFor is how long the faults hold this request: the longest matching Hold.
func (f *faultInjector) holdFor(op *ast.OperationDefinition, vars map[string]any, agentID string) time.Duration {
	f.mu.Lock()
	holds := f.faults.Holds
	f.mu.Unlock()
	var longest time.Duration
	for _, h := range holds {
		if h.For > longest && h.matches(op, vars, agentID) {
			longest = h.For
		}
	}
	return longest
}

func (h Hold) matches(op *ast.OperationDefinition, vars map[string]any, agentID string) bool {
	if h.AgentID != "" && h.AgentID != agentID {
		return false
	}
	for _, sel := range op.SelectionSet {
		f, ok := sel.(*ast.Field)
		if !ok || (h.Field != "" && f.Name != h.Field) {
			continue
		}
		if h.StateType == "" {
			return true
		}
		input, _ := f.ArgumentMap(vars)["input"].(map[string]any)
		for _, item := range asList(input["states"]) {
			in, _ := item.(map[string]any)
			state, _ := in["state"].(map[string]any)
			if asString(state["type"]) == h.StateType {
				return true
			}
		}
	}
	return false
}
