package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// registerLimitMetrics serves each limit's maximum and use, and the runs
// held back, at /metrics.
func (a *Agent) registerLimitMetrics() {
	if !a.limits.enabled() {
		return
	}
	usage := func(i int) float64 {
		return float64(a.limits.inUse(a.jobs)[i])
	}
	for i, l := range a.limits.limits {
		labels := prometheus.Labels{"limit": l.Name()}
		a.metrics.registry.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "prefect_agent_concurrency_limit", ConstLabels: labels,
				Help: "The most flow runs a concurrency limit (--limit) lets have an unfinished Job at once."},
				func() float64 { return float64(l.Max) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "prefect_agent_concurrency_limit_in_use", ConstLabels: labels,
				Help: "Flow runs holding a concurrency limit: unfinished Jobs and submissions whose Job is not seen yet."},
				func() float64 { return usage(i) }))
	}
	a.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "prefect_agent_flow_runs_held",
		Help: "Flow runs a concurrency limit held back at a poll in the last minute (they stay Scheduled)."},
		func() float64 { return float64(a.limits.heldRuns()) }))
}
