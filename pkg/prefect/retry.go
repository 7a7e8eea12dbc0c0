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
	inner graphql.Client
	cfg   Config
}

func (c retryingClient) MakeRequest(ctx context.Context, req *graphql.Request, resp *graphql.Response) error {
	delay := c.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := c.inner.MakeRequest(ctx, req, resp)
		if err == nil {
			return nil
		}
		classified, retry, wait := classify(req.OpName, err)
		if !retry || attempt >= c.cfg.MaxAttempts || ctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classified
		}
		if c.cfg.OnRetry != nil {
			c.cfg.OnRetry(req.OpName, attempt, classified)
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
		delay = min(delay*2, c.cfg.MaxBackoff)
	}
}

// rateLimitWait marks a rate-limited answer in classify's result.
const rateLimitWait = time.Duration(-1)

// classify turns a genqlient error into one of this package's errors and says
// whether to try again, and after at least how long.
func classify(op string, err error) (error, bool, time.Duration) {
	var httpErr *graphql.HTTPError
	if errors.As(err, &httpErr) {
		msg := firstMessage(httpErr.Response.Errors)
		switch {
		case httpErr.StatusCode == http.StatusTooManyRequests:
			return &APIError{Op: op, Status: httpErr.StatusCode, Message: "rate limited"}, true, rateLimitWait
		case httpErr.StatusCode >= 500:
			return &APIError{Op: op, Status: httpErr.StatusCode, Message: msg}, true, 0
		case httpErr.StatusCode == http.StatusBadRequest:
			return &RequestError{Op: op, Message: msg}, false, 0
		case httpErr.StatusCode == http.StatusUnauthorized || httpErr.StatusCode == http.StatusForbidden:
			return ErrUnauthenticated, false, 0
		}
		return &APIError{Op: op, Status: httpErr.StatusCode, Message: msg}, false, 0
	}
	var list gqlerror.List
	if errors.As(err, &list) {
		msg := firstMessage(list)
		for _, e := range list {
			code, _ := e.Extensions["code"].(string)
			switch {
			case code == "UNAUTHENTICATED" || strings.Contains(e.Message, "Malformed Authorization header"):
				return ErrUnauthenticated, false, 0
			case code == "VERSION_LOCKING_ERROR":
				return errors.Join(ErrVersionLocked, &APIError{Op: op, Message: e.Message}), false, 0
			case strings.Contains(e.Message, "State update failed"):
				return errors.Join(ErrAlreadySubmitted, &APIError{Op: op, Message: e.Message}), false, 0
			case code == "API_ERROR":
				return &APIError{Op: op, Message: e.Message}, true, 0
			}
		}
		return &APIError{Op: op, Message: msg}, false, 0
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err, false, 0
	}
	// Transport errors: connection refused, resets, timeouts, bad JSON from a proxy.
	return &APIError{Op: op, Message: err.Error()}, true, 0
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
