package prefect

import (
	"strings"

	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Prefect Server's GraphQL gateway (services/apollo in PrefectHQ/server)
// forwards each operation with node-fetch to the Python service or to
// Hasura (src/executors.js). When that upstream is down, restarting or
// answers something that is not JSON, node-fetch throws, and Apollo turns the
// exception into an error with extensions.code INTERNAL_SERVER_ERROR in an
// HTTP 200 answer. The same code also carries every error a resolver raises
// on purpose ("State update failed...", validation), so the code alone does
// not make an error transient: the message must name an upstream failure.

// upstreamFailureMarks are the message shapes node-fetch 2 gives to a
// request that never got a usable answer, and the system error codes its
// "reason" carries.
var upstreamFailureMarks = []string{
	"invalid json response body at ",
	"network timeout at: ",
	"response timeout while trying to fetch ",
	"invalid response body while trying to fetch ",
	"econnrefused",
	"econnreset",
	"etimedout",
	"ehostunreach",
	"enetunreach",
	"eai_again",
	"enotfound",
	"epipe",
	"socket hang up",
}

// gatewayUpstreamFailure tells whether e is the gateway reporting that the
// service behind it could not be reached or answered garbage: the operation
// may or may not have been applied, and a later try can succeed.
func gatewayUpstreamFailure(e *gqlerror.Error) bool {
	if code, _ := e.Extensions["code"].(string); code != "INTERNAL_SERVER_ERROR" {
		return false
	}
	msg := strings.ToLower(e.Message)
	if strings.HasPrefix(msg, "request to ") && strings.Contains(msg, " failed, reason: ") {
		return true
	}
	for _, mark := range upstreamFailureMarks {
		if strings.Contains(msg, mark) {
			return true
		}
	}
	return false
}
