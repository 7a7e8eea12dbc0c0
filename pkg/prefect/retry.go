package prefect

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/Khan/genqlient/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// retryingClient retries what can succeed on a later try (HTTP 5xx and 429,
// transport errors, Cloud's API_ERROR) and turns the rest into typed errors.
type retryingClient struct {
	inner  graphql.Client
	client *Client
}

func (c retryingClient) MakeRequest(ctx context.Context, req *graphql.Request, resp *graphql.Response) error {
	cfg := &c.client.cfg
	delay := cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := c.inner.MakeRequest(ctx, req, resp)
		if err == nil {
			return nil
		}
		retry, wait, classified := classify(req.OpName, err)
		if cfg.OnError != nil {
			cfg.OnError(req.OpName, classified)
		}
		if !retry || attempt >= cfg.MaxAttempts || ctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classified
		}
		if cfg.OnRetry != nil {
			cfg.OnRetry(req.OpName, attempt, classified)
		}
		if wait == rateLimitWait {
			wait = 4 * delay // back off harder when told to slow down
		} else {
			wait = delay
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		delay = min(delay*2, cfg.MaxBackoff)
	}
}

// rateLimitWait marks a rate-limited answer in classify's result.
const rateLimitWait = time.Duration(-1)

// classify turns a genqlient error into one of this package's errors and says
// whether to try again, and after at least how long.
func classify(op string, err error) (retry bool, wait time.Duration, classified error) {
	var httpErr *graphql.HTTPError
	if errors.As(err, &httpErr) {
		msg := firstMessage(httpErr.Response.Errors)
		switch {
		case httpErr.StatusCode == http.StatusTooManyRequests:
			return true, rateLimitWait, &APIError{Op: op, Status: httpErr.StatusCode, Message: "rate limited"}
		case httpErr.StatusCode >= 500:
			return true, 0, &APIError{Op: op, Status: httpErr.StatusCode, Message: msg}
		case httpErr.StatusCode == http.StatusBadRequest:
			return false, 0, &RequestError{Op: op, Message: msg}
		case httpErr.StatusCode == http.StatusUnauthorized || httpErr.StatusCode == http.StatusForbidden:
			return false, 0, ErrUnauthenticated
		}
		return false, 0, &APIError{Op: op, Status: httpErr.StatusCode, Message: msg}
	}
	var list gqlerror.List
	if errors.As(err, &list) {
		msg := firstMessage(list)
		for _, e := range list {
			code, _ := e.Extensions["code"].(string)
			switch {
			case code == "UNAUTHENTICATED" || strings.Contains(e.Message, "Malformed Authorization header"):
				return false, 0, ErrUnauthenticated
			case code == "VERSION_LOCKING_ERROR":
				return false, 0, errors.Join(ErrVersionLocked, &APIError{Op: op, Message: e.Message})
			case strings.Contains(e.Message, "State update failed"):
				return false, 0, errors.Join(ErrAlreadySubmitted, &APIError{Op: op, Message: e.Message})
			case code == "API_ERROR":
				return true, 0, &APIError{Op: op, Message: e.Message}
			}
		}
		return false, 0, &APIError{Op: op, Message: msg}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false, 0, err
	}
	// Transport errors: connection refused, resets, timeouts, bad JSON from a proxy.
	return true, 0, &APIError{Op: op, Message: err.Error()}
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
