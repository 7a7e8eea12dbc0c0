package prefect

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// gatewayError answers as Server's Apollo gateway does when an executor's
// fetch fails: HTTP 200, data null, one INTERNAL_SERVER_ERROR error.
func gatewayError(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"data":null,"errors":[{"message":"` + message + `","path":["hello"],"extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}`))
}

func TestGatewayUpstreamFailuresAreRetriedForReads(t *testing.T) {
	for _, message := range []string{
		"request to http://graphql:4201/graphql/ failed, reason: connect ECONNREFUSED 10.0.0.7:4201",
		"request to http://hasura:3000/v1alpha1/graphql failed, reason: socket hang up",
		"invalid json response body at http://graphql:4201/graphql/ reason: Unexpected token < in JSON at position 0",
		"network timeout at: http://hasura:3000/v1alpha1/graphql",
	} {
		t.Run(message[:24], func(t *testing.T) {
			srv, attempts := helloServer(t, func(n int32, w http.ResponseWriter) bool {
				if n <= 2 {
					gatewayError(w, message)
					return true
				}
				return false
			})
			var retried int
			c := NewClient(Config{API: srv.URL, Backoff: time.Millisecond, OnRetry: func(string, int, error) { retried++ }})
			resp, err := Hello(context.Background(), c.GraphQL())
			if err != nil {
				t.Fatalf("the gateway's upstream failure ended the read: %v", err)
			}
			if resp.Hello != "hi" || attempts.Load() != 3 || retried != 2 {
				t.Fatalf("answer %q after %d attempts and %d retries, want hi after 3 and 2", resp.Hello, attempts.Load(), retried)
			}
		})
	}
}

func TestGatewayUpstreamFailureOfAOnceMutationIsMaybeApplied(t *testing.T) {
	srv, attempts := helloServer(t, func(_ int32, w http.ResponseWriter) bool {
		gatewayError(w, "request to http://graphql:4201/graphql/ failed, reason: read ECONNRESET")
		return true
	})
	c := NewClient(Config{API: srv.URL, Backoff: time.Millisecond})
	_, err := Hello(Once(context.Background()), c.GraphQL())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || errors.Is(err, ErrAlreadySubmitted) {
		t.Fatalf("error %v, want an APIError that is not a refusal", err)
	}
	if !strings.Contains(apiErr.Message, "may have been applied") || apiErr.Status != 0 {
		t.Fatalf("error %q (status %d) does not say the change may have been applied", apiErr.Message, apiErr.Status)
	}
	if got := attempts.Load(); got != 1 {
		t.Fatalf("%d attempts, want 1", got)
	}
}

func TestResolverErrorsWithTheSameCodeAreFinal(t *testing.T) {
	for _, tc := range []struct {
		message string
		want    error
	}{
		{"State update failed: this run has already been submitted.", ErrAlreadySubmitted},
		{"State payload is too large.", nil},
	} {
		srv, attempts := helloServer(t, func(_ int32, w http.ResponseWriter) bool {
			gatewayError(w, tc.message)
			return true
		})
		c := NewClient(Config{API: srv.URL, Backoff: time.Millisecond})
		_, err := Hello(context.Background(), c.GraphQL())
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Fatalf("%q: error %v, want %v", tc.message, err, tc.want)
		}
		if got := attempts.Load(); got != 1 {
			t.Fatalf("%q was tried %d times, want once", tc.message, got)
		}
	}
}
