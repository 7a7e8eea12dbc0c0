package printing

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// PodsByJob pages through the pods of flow Jobs in ns (all namespaces when
// empty), chunk at a time, and returns them by their Job's namespace/name.
func PodsByJob(ctx context.Context, client kubernetes.Interface, ns string, chunk int64) (map[string][]*corev1.Pod, error) {
	out := map[string][]*corev1.Pod{}
	opts := metav1.ListOptions{LabelSelector: manifest.LabelIdentifier, Limit: chunk}
	for {
		page, err := client.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range page.Items {
			p := &page.Items[i]
			for _, ref := range p.OwnerReferences {
				if ref.Kind == "Job" {
					out[p.Namespace+"/"+ref.Name] = append(out[p.Namespace+"/"+ref.Name], p)
				}
			}
		}
		if page.Continue == "" {
			return out, nil
		}
		opts.Continue = page.Continue
	}
}
