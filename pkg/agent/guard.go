package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Guardrails are the agent's limits on what it starts: concurrency limits
// and the late-run policy (the run time limit is the Jobs' deadline, in
// manifest.AgentSettings.MaxRunTime).
type Guardrails struct {
	// Limits cap the runs with an unfinished Job (--limit).
	Limits []Limit
	// MaxLateness is how late a run may be when first seen (0: any).
	MaxLateness time.Duration
	// LateRuns is what happens to a later run: LateRun, LateSkip or LateFail.
	LateRuns string
}

// guard sorts a poll's runs oldest start time first, hands the late ones to
// the late-run policy, and keeps those a limit holds back. It returns the
// runs to submit, each with a slot reserved, and how many it handed to
// workers itself. A run the limits hold gets one INFO line saying which
// limit and how many hold it, and stays Scheduled.
func (a *Agent) guard(pollCtx, workCtx context.Context, hurry hurrySignal, runs []prefect.FlowRun) (out []prefect.FlowRun, handed int, stopped bool) {
	if !a.limits.enabled() && !a.late.enabled() {
		return runs, 0, false
	}
	sort.SliceStable(runs, func(i, j int) bool { return runStart(runs[i]).Before(runStart(runs[j])) })
	if a.late.enabled() {
		var onTime []prefect.FlowRun
		for _, run := range runs {
			by, late := a.late.late(run.Id, runStart(run))
			if !late || !prefect.ScheduledFamily(prefect.StateType(run.Serialized_state)) {
				onTime = append(onTime, run)
				continue
			}
			started, stop := a.startWorker(pollCtx, run.Id, func() { a.handleLate(workCtx, hurry, run, by) })
			if stop {
				return nil, handed, true
			}
			if started {
				handed++
			}
		}
		runs = onTime
	}
	if !a.limits.enabled() {
		return runs, handed, false
	}
	ad, ok := a.limits.begin(a.jobs)
	if !ok {
		klog.FromContext(pollCtx).V(1).Info("Concurrency limits: waiting for the Job cache and the recovery at start before starting runs")
		return nil, handed, false
	}
	type heldRun struct {
		run prefect.FlowRun
		why *held
	}
	var fresh []heldRun
	for _, run := range runs {
		why := ad.admit(run.Id, run.Version, factsOf(run))
		if why == nil {
			out = append(out, run)
			continue
		}
		if ad.note(run.Id) {
			fresh = append(fresh, heldRun{run, why})
		}
	}
	ad.end()
	for _, h := range fresh {
		msg := fmt.Sprintf("Waiting for a slot: concurrency limit %s allows %d flow runs at once and %d hold it; the run stays Scheduled and starts when one finishes",
			h.why.limit.Name(), h.why.limit.Max, h.why.using)
		klog.FromContext(pollCtx).Info("Flow run held by a concurrency limit", "flowRun", h.run.Id, "limit", h.why.limit.String(), "using", h.why.using)
		a.runs.BestEffort(pollCtx, h.run.Id, prefect.LevelInfo, msg)
	}
	return out, handed, false
}

// runStart is when a run was due: its state's start time, else its
// scheduled start time.
func runStart(run prefect.FlowRun) time.Time {
	if t, ok := prefect.StateStartTime(run.Serialized_state); ok {
		return t
	}
	return run.Scheduled_start_time
}

// factsOf reads what the limits look at from a run: its flow's name and
// its labels.
func factsOf(run prefect.FlowRun) runFacts {
	r := runFacts{flow: run.Flow.Name}
	_ = json.Unmarshal(run.Labels, &r.labels)
	return r
}

// describeLimits lists the limits for the start line.
func describeLimits(limits []Limit) string {
	parts := make([]string, len(limits))
	for i, l := range limits {
		parts[i] = l.String()
	}
	return strings.Join(parts, " ")
}

// logGuardrails says, once at start, which guardrails are on.
func (a *Agent) logGuardrails(log klog.Logger) {
	g := a.cfg.Guardrails
	if len(g.Limits) > 0 {
		log.Info("Concurrency limits", "limits", describeLimits(g.Limits))
	}
	if a.late.enabled() {
		log.Info("Late flow runs", "maxLateness", g.MaxLateness, "policy", a.late.policy)
	}
	if a.cfg.Job.MaxRunTime > 0 {
		log.Info("Flow run Jobs get a run time limit unless their template sets activeDeadlineSeconds", "maxRunTime", a.cfg.Job.MaxRunTime)
	}
}
