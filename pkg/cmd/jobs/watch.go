package jobs

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// watch prints each change to the agent's Jobs after the listing, one row
// (or object) per change, until the command is interrupted.
func (o *Options) watch(ctx context.Context, resourceVersion string, headersShown bool) error {
	w, err := o.client.BatchV1().Jobs(o.namespace).Watch(ctx, metav1.ListOptions{
		LabelSelector: o.selector, ResourceVersion: resourceVersion, AllowWatchBookmarks: false,
	})
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil
			}
			if ev.Type == watch.Error {
				return fmt.Errorf("watching Jobs: %v", ev.Object)
			}
			job, isJob := ev.Object.(*batchv1.Job)
			if !isJob || (o.Flow != "" && job.Annotations[manifest.AnnotationFlowName] != o.Flow) {
				continue
			}
			if err := o.print(ctx, []batchv1.Job{*job}, o.NoHeaders || headersShown); err != nil {
				return err
			}
			headersShown = true
		}
	}
}
