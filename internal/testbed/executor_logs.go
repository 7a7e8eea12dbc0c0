package testbed

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
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

// logsServedWithin bounds the wait for kwok to serve a new Logs object.
const logsServedWithin = 5 * time.Second

// serveLog points kwok at the log file of the pod's flow container, and
// waits until kwok serves it, so that the log of a container that fails at
// once can be read as soon as the pod shows the failure, as from a kubelet.
// The pod owns the object, so it goes with the pod.
//
// kwok (v0.8.0) serves the first Logs object of a fresh cluster only about
// 2.5 s after it was created ("no logs found for container" until then;
// later ones within milliseconds), longer than the agent's reads of a failed
// container's output wait: without this wait its evidence of the first
// failure was lost.
func (p *podProcess) serveLog(ctx context.Context) error {
	client, err := dynamic.NewForConfig(p.x.c.Config)
	if err != nil {
		return err
	}
	logs := client.Resource(kwokLogs).Namespace(p.pod.Namespace)
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
	if _, err := logs.Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	opts := &corev1.PodLogOptions{Container: p.pod.Spec.Containers[p.container].Name}
	deadline := time.Now().Add(logsServedWithin)
	for {
		_, err := p.x.c.Client.CoreV1().Pods(p.pod.Namespace).GetLogs(p.pod.Name, opts).DoRaw(ctx)
		if err == nil || apierrors.IsNotFound(err) {
			return nil // served, or the pod is gone
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("kwok does not serve the log %s names yet: %w", p.pod.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
