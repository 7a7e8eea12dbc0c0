package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// record brings the Job's annotations up to date: the reported problems and
// why it waits. The patch is retried (through the queue) until it lands.
func (c *Controller) record(ctx context.Context, job *batchv1.Job, w *waiting) error {
	annotations := map[string]any{}
	keys := c.reported.keys(job)
	if joined := strings.Join(keys, ","); joined != job.Annotations[AnnotationReported] && len(keys) > 0 {
		annotations[AnnotationReported] = joined
	}
	reason, since := "", ""
	if w != nil {
		reason, since = w.reason, w.since.UTC().Format(time.RFC3339)
	}
	if job.Annotations[AnnotationWaitingReason] != reason || job.Annotations[AnnotationWaitingSince] != since {
		annotations[AnnotationWaitingReason], annotations[AnnotationWaitingSince] = nullIfEmpty(reason), nullIfEmpty(since)
	}
	if len(annotations) == 0 {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	_, err := c.kube.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("recording on Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	return nil
}

// nullIfEmpty makes a merge patch remove an annotation that has no value.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
