package agent

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/jobtemplate"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// A run config's template that cannot be read for a reason that may pass (the
// location answered 503, 429 or S3 SlowDown, timed out, or could not be
// resolved or reached) does not fail the run: the run stays Scheduled, gets
// one WARNING line, and is not taken again before its back-off ends (5 s
// doubling to 30 s). Only a read that cannot succeed (not found, denied, too
// large, outside the fence) or a template that is invalid fails the run.

// templateRetry is one run's back-off after transient template failures.
type templateRetry struct {
	attempts int
	until    time.Time
}

const (
	templateRetryFirst = 5 * time.Second
	templateRetryMax   = 30 * time.Second
)

// deferOnTransientTemplate handles a build error: when the template read may
// succeed later it schedules the next try, warns on the run the first time
// and returns true; otherwise false (the caller fails the run).
func (a *Agent) deferOnTransientTemplate(ctx context.Context, run prefect.FlowRun, err error) bool {
	if !jobtemplate.IsTransient(err) {
		return false
	}
	prev, _ := a.templateRetries.Load(run.Id)
	r, _ := prev.(templateRetry)
	wait := templateRetryFirst << min(r.attempts, 5)
	r.attempts++
	r.until = a.cfg.Now().Add(min(wait, templateRetryMax))
	a.templateRetries.Store(run.Id, r)
	a.metrics.submitFailures.WithLabelValues("template-transient").Inc()
	klog.FromContext(ctx).Info("The flow run's Job template cannot be read for now; the run stays Scheduled and is tried again", "flowRun", run.Id, "attempt", r.attempts, "retryAt", r.until, "err", err.Error())
	if r.attempts == 1 {
		a.runs.BestEffort(ctx, run.Id, prefect.LevelWarning, "Cannot read the flow run's Job template for now ("+err.Error()+"); the run stays Scheduled and the agent tries again with back-off")
	}
	return true
}

// templateBackingOff tells whether the run waits out a template back-off.
func (a *Agent) templateBackingOff(id string, now time.Time) bool {
	v, ok := a.templateRetries.Load(id)
	return ok && now.Before(v.(templateRetry).until)
}

// templateRead forgets a run's back-off once its Job could be built.
func (a *Agent) templateRead(id string) { a.templateRetries.Delete(id) }
