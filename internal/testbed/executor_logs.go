package testbed

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// kwok serves a container's log to `kubectl logs` from the file a Logs
// object (kwok.x-k8s.io/v1alpha1, named after the pod) names; the cluster is
// created with that kind enabled.
var kwokLogs = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

// serveLog points kwok at the log file of the pod's flow container. The pod
// owns the object, so it goes with the pod.
func (p *podProcess) serveLog(ctx context.Context) error {
	client, err := dynamic.NewForConfig(p.x.c.Config)
	if err != nil {
		return err
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Logs",
		"metadata": map[string]any{
			"name":      p.pod.Name,
			"namespace": p.pod.Namespace,
			"ownerReferences": []any{map[string]any{
				"apiVersion": "v1", "kind": "Pod", "name": p.pod.Name, "uid": string(p.pod.UID),
			}},
		},
		"spec": map[string]any{"logs": []any{map[string]any{
			"containers": []any{p.pod.Spec.Containers[p.container].Name},
			"logsFile":   p.logPath(),
			"follow":     true,
		}}},
	}}
	_, err = client.Resource(kwokLogs).Namespace(p.pod.Namespace).Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
