package prefect

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Khan/genqlient/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// retryingClient retries what can succeed on a later try (HTTP 5xx and 429,
// transport errors, Cloud's API_ERROR, Server's gateway reporting its
// upstream down) and turns the rest into typed errors.
type retryingClient struct {
	inner  graphql.Client
	client *Client
}

func (c retryingClient) MakeRequest(ctx context.Context, req *graphql.Request, resp *graphql.Response) error {
	cfg := &c.client.cfg
	delay := cfg.Backoff
	once := ctx.Value(onceKey{}) != nil
	data := resp.Data
	for attempt := 1; ; attempt++ {
		var told retryAfter
		// genqlient decodes into resp without clearing it: errors left from
		// an earlier try would fail this one, and a "data": null answer
		// drops the caller's destination.
		resp.Data, resp.Errors, resp.Extensions = data, nil, nil
		err := c.inner.MakeRequest(context.WithValue(ctx, retryAfterKey{}, &told), req, resp)
		if err == nil {
			return nil
		}
		retry, rateLimited, classified := classify(req.OpName, err, ctx.Err() == nil)
		if cfg.OnError != nil {
			cfg.OnError(req.OpName, classified)
		}
		if !retry || once || attempt >= cfg.MaxAttempts || ctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classified
		}
		if cfg.OnRetry != nil {
			cfg.OnRetry(req.OpName, attempt, classified)
		}
		wait := delay
		if rateLimited {
			// Told to slow down: wait what the server asked, and never less
			// than a long floor.
			wait = min(max(told.d, 4*delay, rateLimitFloor), max(cfg.MaxBackoff, min(told.d, maxRetryAfter)))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		delay = min(delay*2, cfg.MaxBackoff)
	}
}

// rateLimitFloor is the shortest wait after an HTTP 429.
const rateLimitFloor = time.Second

// onceKey marks a context whose requests must not be repeated by the client.
type onceKey struct{}

// Once returns a context whose requests the client sends only once: for
// mutations that are not idempotent (the Submitted mark), whose caller
// resolves a failure by reading the result back instead.
func Once(ctx context.Context) context.Context { return context.WithValue(ctx, onceKey{}, true) }

// maxRetryAfter bounds how long a Retry-After header can hold one call: a
// day-long answer would otherwise stall the agent past its health check.
const maxRetryAfter = 5 * time.Minute

// retryAfterKey carries a *retryAfter to the HTTP doer, which fills it from a
// 429 answer's Retry-After header (genqlient's HTTPError drops the headers).
type retryAfterKey struct{}

type retryAfter struct{ d time.Duration }

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// classify turns a genqlient error into one of this package's errors and says
// whether to try again and whether the server asked to slow down. callerAlive
// tells a timeout of the HTTP client (worth another try; for a mutation the
// change may have been applied) from the caller's own deadline (final).
func classify(op string, err error, callerAlive bool) (retry, rateLimited bool, classified error) {
	var httpErr *graphql.HTTPError
	if errors.As(err, &httpErr) {
		msg := firstMessage(httpErr.Response.Errors)
		switch {
		case httpErr.StatusCode == http.StatusTooManyRequests:
			return true, true, &APIError{Op: op, Status: httpErr.StatusCode, Message: "rate limited"}
		case httpErr.StatusCode >= 500:
			return true, false, &APIError{Op: op, Status: httpErr.StatusCode, Message: msg}
		case httpErr.StatusCode == http.StatusBadRequest:
			return false, false, &RequestError{Op: op, Message: msg}
		case httpErr.StatusCode == http.StatusUnauthorized || httpErr.StatusCode == http.StatusForbidden:
			return false, false, ErrUnauthenticated
		}
		return false, false, &APIError{Op: op, Status: httpErr.StatusCode, Message: msg}
	}
	var list gqlerror.List
	if errors.As(err, &list) {
		msg := firstMessage(list)
		for _, e := range list {
			code, _ := e.Extensions["code"].(string)
			switch {
			case code == "UNAUTHENTICATED" || strings.Contains(e.Message, "Malformed Authorization header"):
				return false, false, ErrUnauthenticated
			case code == "VERSION_LOCKING_ERROR":
				return false, false, errors.Join(ErrVersionLocked, &APIError{Op: op, Message: e.Message})
			case strings.Contains(e.Message, "State update failed"):
				return false, false, errors.Join(ErrAlreadySubmitted, &APIError{Op: op, Message: e.Message})
			case code == "API_ERROR":
				return true, false, &APIError{Op: op, Message: e.Message}
			case gatewayUpstreamFailure(e):
				return true, false, &APIError{Op: op, Message: "the gateway could not reach the service behind it (the change may have been applied): " + e.Message}
			}
		}
		return false, false, &APIError{Op: op, Message: msg}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if !callerAlive || errors.Is(err, context.Canceled) {
			return false, false, err
		}
		// net/http's client timeout wraps DeadlineExceeded although the
		// caller's context is alive: the answer did not come in time.
		return true, false, &APIError{Op: op, Message: "no answer in time (the change may have been applied): " + err.Error()}
	}
	// Transport errors: connection refused, resets, timeouts, bad JSON from a proxy.
	return true, false, &APIError{Op: op, Message: err.Error()}
}

func firstMessage(list gqlerror.List) string {
	if len(list) == 0 {
		return "no error message"
	}
	msgs := make([]string, 0, len(list))
	for _, e := range list {
		msgs = append(msgs, e.Message)
	}
	return strings.Join(msgs, "; ")
}
