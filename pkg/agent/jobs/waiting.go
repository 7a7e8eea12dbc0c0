package jobs

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// waitTracker knows which Jobs wait on purpose, why and since when, and
// shows it in /metrics: how many Jobs wait by reason and the longest wait.
type waitTracker struct {
	mu    sync.Mutex
	jobs  map[string]waiting
	now   func() time.Time
	count *prometheus.Desc
	most  *prometheus.Desc
}

func newWaitTracker() *waitTracker {
	return &waitTracker{
		jobs: map[string]waiting{}, now: time.Now,
		count: prometheus.NewDesc("prefect_agent_jobs_waiting", "Jobs whose flow has not started and that wait on purpose, by reason (quota, admission, unschedulable, scale-up, missing-object, image-pull).", []string{"reason"}, nil),
		most:  prometheus.NewDesc("prefect_agent_jobs_waiting_longest_seconds", "How long the longest-waiting Job of each reason has waited.", []string{"reason"}, nil),
	}
}

// set records a Job's wait, or its end when w is nil.
func (t *waitTracker) set(key string, w *waiting) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w == nil {
		delete(t.jobs, key)
		return
	}
	t.jobs[key] = waiting{reason: w.reason, since: w.since}
}

func (t *waitTracker) forget(key string) { t.set(key, nil) }

// reset forgets every Job, for a manager starting afresh (a new leader term).
func (t *waitTracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.jobs = map[string]waiting{}
}

// Describe and Collect make the tracker a Prometheus collector.
func (t *waitTracker) Describe(ch chan<- *prometheus.Desc) {
	ch <- t.count
	ch <- t.most
}

func (t *waitTracker) Collect(ch chan<- prometheus.Metric) {
	t.mu.Lock()
	counts, longest := map[string]int{}, map[string]time.Duration{}
	now := t.now()
	for _, w := range t.jobs {
		counts[w.reason]++
		longest[w.reason] = max(longest[w.reason], now.Sub(w.since))
	}
	t.mu.Unlock()
	for _, reason := range []string{waitQuota, waitAdmission, waitUnschedulable, waitScaleUp, waitMissingObject, waitImagePull} {
		ch <- prometheus.MustNewConstMetric(t.count, prometheus.GaugeValue, float64(counts[reason]), reason)
		ch <- prometheus.MustNewConstMetric(t.most, prometheus.GaugeValue, longest[reason].Seconds(), reason)
	}
}
