package jobs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// DefaultFailedPodLogLines is how many of a failed flow container's last
// output lines the agent copies into the run log (--failed-pod-log-lines).
const DefaultFailedPodLogLines = 50

// maxEvidenceBytes bounds the output copied into one run log line.
const maxEvidenceBytes = 64 << 10

// evidenceTries and evidenceRetryDelay bound the reads of a failed
// container's output that fail for another reason than a refusal.
const (
	evidenceTries      = 4
	evidenceRetryDelay = 500 * time.Millisecond
)

// evidenceTimeout bounds the read of a failed container's output.
const evidenceTimeout = 10 * time.Second

// saveEvidence copies the last lines of a failed flow container's output
// into the run log, right after the failure's ERROR line and before the Job
// may be deleted: a pod that dies before `prefect execute` starts (an
// import error, a bad entrypoint) leaves nothing else behind. The line is
// INFO, under the agent's name; a read that fails says why instead.
func (c *Controller) saveEvidence(ctx context.Context, job *batchv1.Job, runID string, p problem) {
	lines := c.cfg.FailedPodLogLines
	if lines < 0 {
		return
	}
	if lines == 0 {
		lines = DefaultFailedPodLogLines
	}
	out, err := c.tail(ctx, job.Namespace, p.failedPod, p.failedContainer, lines)
	for try := 1; err != nil && try < evidenceTries && !apierrors.IsForbidden(err) && !apierrors.IsNotFound(err); try++ {
		// The kubelet may not serve a container's log the very moment it ended.
		select {
		case <-ctx.Done():
			return
		case <-time.After(evidenceRetryDelay):
		}
		out, err = c.tail(ctx, job.Namespace, p.failedPod, p.failedContainer, lines)
	}
	c.runs.BestEffort(ctx, runID, prefect.LevelInfo, evidenceLine(p.failedPod, p.failedContainer, lines, out, err))
}

// tail reads a container's last lines.
func (c *Controller) tail(ctx context.Context, ns, pod, container string, lines int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, evidenceTimeout)
	defer cancel()
	n := int64(lines)
	// The size is bounded here rather than with limitBytes, which not every
	// kubelet implementation serves.
	rc, err := c.kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, TailLines: &n}).Stream(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxEvidenceBytes))
	if err != nil {
		return "", err
	}
	return string(bytes.TrimRight(raw, "\n")), nil
}

// evidenceLine is the run log line holding a failed container's output.
func evidenceLine(pod, container string, lines int, out string, err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("Could not read the output of container %q of pod %s: %v (the agent needs get on pods/log)", container, pod, err)
	case err != nil:
		return fmt.Sprintf("Could not read the output of container %q of pod %s: %v", container, pod, err)
	case strings.TrimSpace(out) == "":
		return fmt.Sprintf("Container %q of pod %s wrote no output", container, pod)
	}
	return fmt.Sprintf("Last %d lines of the output of container %q of pod %s:\n%s", lines, container, pod, out)
}

// eventReason is the Event reason of a line written to the run.
func (p problem) eventReason() string {
	switch {
	case p.giveUp:
		return EventGaveUp
	case strings.Contains(p.key, "/waiting/"):
		return EventWaiting
	case p.level == prefect.LevelError:
		return EventFailureReported
	}
	return EventReported
}

// deletedBecause explains a deletion's why in an Event.
func deletedBecause(why string) string {
	switch why {
	case "completed":
		return "the Job completed"
	case "failed":
		return "the flow failed and its failure was reported to the flow run"
	case "gave-up":
		return "the flow never started and the run was failed"
	case "cancelled":
		return "the flow run was cancelled"
	case "superseded":
		return "a newer submission of the flow run replaced it"
	case DriftRunFinished:
		return "the flow run finished in Prefect while its pod still ran"
	}
	return why
}
