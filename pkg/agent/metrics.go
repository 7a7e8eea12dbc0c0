package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, served at /metrics.
type metrics struct {
	registry       *prometheus.Registry
	runsSubmitted  prometheus.Counter
	submitFailures *prometheus.CounterVec
	pollLatency    prometheus.Histogram
	apiErrors      *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		runsSubmitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prefect_agent_flow_runs_submitted_total", Help: "Flow runs marked Submitted whose Job was created.",
		}),
		submitFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_submission_failures_total", Help: "Flow runs that could not be deployed, by stage (build, create, template-transient: tried again later).",
		}, []string{"stage"}),
		pollLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "prefect_agent_poll_duration_seconds", Help: "Time to poll the Prefect queue and read the runs found.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_api_errors_total", Help: "Failed Prefect API requests, by operation (retried ones included).",
		}, []string{"operation"}),
	}
	m.registry.MustRegister(m.runsSubmitted, m.submitFailures, m.pollLatency, m.apiErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
