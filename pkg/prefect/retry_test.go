package prefect

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// helloServer answers Hello; answer decides per attempt (1-based) how.
func helloServer(t *testing.T, answer func(attempt int32, w http.ResponseWriter) bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answer(attempts.Add(1), w) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data":{"hello":"hi"}}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &attempts
}

func TestClientTimeoutIsRetriedWhileTheCallerWaits(t *testing.T) {
	srv, attempts := helloServer(t, func(n int32, _ http.ResponseWriter) bool {
		if n == 1 {
			time.Sleep(300 * time.Millisecond) // past the client's timeout
		}
		return false
	})
	c := NewClient(Config{API: srv.URL, HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}, Backoff: time.Millisecond})
	if _, err := Hello(context.Background(), c.GraphQL()); err != nil {
		t.Fatalf("a client timeout ended the request: %v", err)
	}
	if got := attempts.Load(); got != 2 {
		t.Fatalf("%d attempts, want 2", got)
	}
}

func TestOnceSendsAMutationOnlyOnce(t *testing.T) {
	srv, attempts := helloServer(t, func(_ int32, w http.ResponseWriter) bool {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return true
	})
	c := NewClient(Config{API: srv.URL, Backoff: time.Millisecond})
	_, err := Hello(Once(context.Background()), c.GraphQL())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadGateway {
		t.Fatalf("error %v, want the 502", err)
	}
	if got := attempts.Load(); got != 1 {
		t.Fatalf("%d attempts, want 1", got)
	}
}

func TestRateLimitHonoursRetryAfter(t *testing.T) {
	srv, attempts := helloServer(t, func(n int32, w http.ResponseWriter) bool {
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return true
		}
		return false
	})
	var retried []string
	c := NewClient(Config{API: srv.URL, Backoff: time.Millisecond, OnRetry: func(op string, _ int, _ error) { retried = append(retried, op) }})
	began := time.Now()
	if _, err := Hello(context.Background(), c.GraphQL()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(began); waited < 2*time.Second {
		t.Fatalf("retried after %s, the server asked for 2 s", waited)
	}
	if attempts.Load() != 2 || len(retried) != 1 || retried[0] != "Hello" {
		t.Fatalf("attempts %d, OnRetry calls %v", attempts.Load(), retried)
	}
}

func TestCallerDeadlineIsFinal(t *testing.T) {
	srv, attempts := helloServer(t, func(int32, http.ResponseWriter) bool {
		time.Sleep(200 * time.Millisecond)
		return false
	})
	c := NewClient(Config{API: srv.URL, Backoff: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Hello(ctx, c.GraphQL()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the caller's deadline", err)
	}
	if got := attempts.Load(); got != 1 {
		t.Fatalf("%d attempts after the caller's deadline, want 1", got)
	}
}
