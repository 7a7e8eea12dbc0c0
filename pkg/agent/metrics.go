package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, served at /metrics.
type metrics struct {
	registry         *prometheus.Registry
	runsSubmitted    prometheus.Counter
	submitFailures   *prometheus.CounterVec
	failuresReported *prometheus.CounterVec
	jobsDeleted      *prometheus.CounterVec
	pollLatency      prometheus.Histogram
	apiErrors        *prometheus.CounterVec
	waiting          *waitTracker
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
		failuresReported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_job_problems_reported_total", Help: "Lines written to flow runs about their Jobs (problems, waits, disruptions), by reason.",
		}, []string{"reason"}),
		jobsDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_jobs_deleted_total", Help: "Jobs deleted by the agent, by why (completed, failed, gave-up, cancelled).",
		}, []string{"why"}),
		pollLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "prefect_agent_poll_duration_seconds", Help: "Time to poll the Prefect queue and read the runs found.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_api_errors_total", Help: "Failed Prefect API requests, by operation (retried ones included).",
		}, []string{"operation"}),
		waiting: newWaitTracker(),
	}
	m.registry.MustRegister(m.runsSubmitted, m.submitFailures, m.failuresReported, m.jobsDeleted, m.pollLatency, m.apiErrors, m.waiting,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
