package agent

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// startHealthServer serves a's HTTP endpoints on a free loopback port until
// the test ends and returns their base URL.
func startHealthServer(t *testing.T, a *Agent) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.cfg.HealthAddress = ln.Addr().String()
	ln.Close()
	stop, err := a.serveHealth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return "http://" + a.cfg.HealthAddress
}

// httpAnswer sends a request without a body and returns the status code and
// the body of the answer.
func httpAnswer(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
