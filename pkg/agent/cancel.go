package agent

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// stateBatch is how many run states one GraphQL request reads.
const stateBatch = 200

// checkCancellations deletes the Jobs of runs the user cancelled. It reads
// the states of the runs of all active Jobs, a page of runs per request.
func (m *manager) checkCancellations(ctx context.Context) {
	jobs, err := m.jobs.List(labels.Everything())
	if err != nil {
		return
	}
	byRun := map[string][]*batchv1.Job{}
	var ids []string
	for _, job := range jobs {
		runID := job.Labels[manifest.LabelFlowRunID]
		if runID == "" || job.DeletionTimestamp != nil || manifest.JobFinished(job) {
			continue
		}
		if len(byRun[runID]) == 0 {
			ids = append(ids, runID)
		}
		byRun[runID] = append(byRun[runID], job)
	}
	for start := 0; start < len(ids); start += stateBatch {
		page := ids[start:min(start+stateBatch, len(ids))]
		states, err := m.a.cfg.Prefect.FlowRunStates(ctx, page)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Reading flow run states for cancellations")
			return
		}
		for id, st := range states {
			if st.State != "Cancelled" && st.State != "Cancelling" {
				continue
			}
			for _, job := range byRun[id] {
				m.cancel(ctx, job, id, st)
			}
		}
	}
}

func (m *manager) cancel(ctx context.Context, job *batchv1.Job, runID string, st prefect.RunState) {
	if m.reported.of(job)[keyCancelled] {
		return
	}
	if err := m.deleteJob(ctx, job, "cancelled"); err != nil {
		klog.FromContext(ctx).Error(err, "Deleting the Job of a cancelled flow run", "job", klog.KObj(job))
		return
	}
	m.reported.add(job, []problem{{key: keyCancelled}})
	m.a.runLog(ctx, runID, prefect.LevelInfo, fmt.Sprintf("Deleted Job %s: the flow run is %s", job.Name, st.State))
}
