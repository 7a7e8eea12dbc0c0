package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// KubeRequestCounter counts the agent's requests to the Kubernetes API by
// method, for /metrics. Wrap the REST config's transport with it.
type KubeRequestCounter struct {
	vec *prometheus.CounterVec
}

// NewKubeRequestCounter returns a counter to pass as Config.KubeRequests.
func NewKubeRequestCounter() *KubeRequestCounter {
	return &KubeRequestCounter{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "prefect_agent_kube_api_requests_total", Help: "Requests to the Kubernetes API, by HTTP method (watches count once).",
	}, []string{"method"})}
}

// Wrap is a rest.Config WrapTransport function.
func (c *KubeRequestCounter) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		c.vec.WithLabelValues(req.Method).Inc()
		return rt.RoundTrip(req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
