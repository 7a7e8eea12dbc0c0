package jobs

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Job controller's Prometheus metrics. They outlive a
// controller (a new leader term builds a new one) and the submitter counts
// the Jobs it deletes in them too.
type Metrics struct {
	failuresReported *prometheus.CounterVec
	jobsDeleted      *prometheus.CounterVec
	drift            *prometheus.CounterVec
	syncs            *prometheus.CounterVec
	waiting          *waitTracker
}

// NewMetrics makes the metrics and registers them in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		failuresReported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_job_problems_reported_total", Help: "Lines written to flow runs about their Jobs (problems, waits, disruptions), by reason.",
		}, []string{"reason"}),
		jobsDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_jobs_deleted_total", Help: "Jobs deleted by the agent, by why (completed, failed, gave-up, cancelled).",
		}, []string{"why"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_drift_total",
			Help: "Disagreements between Prefect and the cluster the agent met, by kind (run-finished-pod-running: repaired by deleting the Job; report-for-other-submission: reported as a WARNING only).",
		}, []string{"kind"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prefect_agent_job_syncs_total",
			Help: "Syncs of a Job (a look at it after an event about it, its pods or their events) the Job controller's workers finished, by result (ok; error: the Job is requeued with back-off).",
		}, []string{"result"}),
		waiting: newWaitTracker(),
	}
	for _, kind := range []string{DriftRunFinished, DriftOtherSubmission} {
		m.drift.WithLabelValues(kind)
	}
	for _, result := range []string{syncOK, syncError} {
		m.syncs.WithLabelValues(result)
	}
	reg.MustRegister(m.failuresReported, m.jobsDeleted, m.drift, m.syncs, m.waiting)
	return m
}

// JobDeleted counts a Job the agent deleted, by why.
func (m *Metrics) JobDeleted(why string) { m.jobsDeleted.WithLabelValues(why).Inc() }

// CountDrift counts one disagreement of a kind (DriftOtherSubmission, ...).
func (m *Metrics) CountDrift(kind string) { m.drift.WithLabelValues(kind).Inc() }

// Results of a Job sync in prefect_agent_job_syncs_total.
const (
	syncOK    = "ok"
	syncError = "error"
)

// countSync counts one finished sync of a Job, by its outcome.
func (m *Metrics) countSync(err error) {
	result := syncOK
	if err != nil {
		result = syncError
	}
	m.syncs.WithLabelValues(result).Inc()
}
