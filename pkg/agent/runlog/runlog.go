// Package runlog writes the agent's lines to flow runs' logs, under the
// agent's name. Each write says what a failure means: a best-effort line is
// logged and dropped when Prefect does not take it (the run's story loses a
// line, nothing else depends on it); a must-land line returns the failure,
// and its caller tries again until Prefect took it (a reported problem, which
// counts as reported only then).
package runlog

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Client is the Prefect API call the writer makes.
type Client interface {
	WriteRunLogs(ctx context.Context, logs ...prefect.RunLog) error
}

// Writer writes lines to flow runs' logs under one name.
type Writer struct {
	client Client
	name   string
	now    func() time.Time
}

// New returns a writer of lines named name, stamped with now.
func New(client Client, name string, now func() time.Time) *Writer {
	if now == nil {
		now = time.Now
	}
	return &Writer{client: client, name: name, now: now}
}

// MustLand writes one line to the run's log and returns the failure: the
// caller keeps what depends on the line undone and tries again.
func (w *Writer) MustLand(ctx context.Context, runID, level, message string) error {
	return w.client.WriteRunLogs(ctx, prefect.RunLog{FlowRunID: runID, Name: w.name, Level: level, Message: message, Time: w.now()})
}

// BestEffort writes one line to the run's log; a failure is logged and the
// line dropped.
func (w *Writer) BestEffort(ctx context.Context, runID, level, message string) {
	if err := w.MustLand(ctx, runID, level, message); err != nil {
		klog.FromContext(ctx).Error(err, "Could not write to the flow run's logs", "flowRun", runID)
	}
}
