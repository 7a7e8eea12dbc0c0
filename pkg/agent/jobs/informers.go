package jobs

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// informer builds a shared informer over a typed client's list and watch.
// A refusal (403) is kept as the agent's access problem, which fails
// /api/health with the verb and resource, until a list succeeds.
func (c *Controller) informer(resource string, obj runtime.Object,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	indexers cache.Indexers) cache.SharedIndexInformer {
	access := c.access
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			out, err := list(ctx, o)
			access.Observe(resource, "list", err)
			return out, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			access.Observe(resource, "watch", err)
			return w, err
		},
	}
	inf := cache.NewSharedIndexInformer(lw, obj, 0, indexers)
	_ = inf.SetTransform(compact)
	return inf
}

func (c *Controller) enqueueJob(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) enqueuePodJob(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*cachedPod)
	if !ok {
		return
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "Job" {
			c.queue.Add(pod.Namespace + "/" + ref.Name)
		}
	}
}

// podDeleted remembers a pod that went away before finishing.
func (c *Controller) podDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*cachedPod)
	if !ok {
		return
	}
	if pod.phase != corev1.PodSucceeded && pod.phase != corev1.PodFailed {
		for _, ref := range pod.OwnerReferences {
			if ref.Kind == "Job" {
				c.goneMu.Lock()
				key := pod.Namespace + "/" + ref.Name
				c.gone[key] = append(c.gone[key], pod)
				c.goneMu.Unlock()
			}
		}
	}
	c.enqueuePodJob(pod)
}

// peekGone returns the pods of a Job deleted before finishing; takeGone
// forgets them once they were reported.
func (c *Controller) peekGone(key string) []*corev1.Pod {
	c.goneMu.Lock()
	defer c.goneMu.Unlock()
	var out []*corev1.Pod
	for _, p := range c.gone[key] {
		out = append(out, p.pod())
	}
	return out
}

func (c *Controller) takeGone(key string) {
	c.goneMu.Lock()
	defer c.goneMu.Unlock()
	delete(c.gone, key)
}

func (c *Controller) enqueueEventJob(obj any) {
	if ev, ok := obj.(*cachedEvent); ok {
		c.queue.Add(ev.involved.Namespace + "/" + ev.involved.Name)
	}
}

// enqueueEventPodJob queues the Job of the pod an event is about.
func (c *Controller) enqueueEventPodJob(obj any) {
	ev, ok := obj.(*cachedEvent)
	if !ok {
		return
	}
	if pod, exists, _ := c.pods.GetIndexer().GetByKey(ev.involved.Namespace + "/" + ev.involved.Name); exists {
		c.enqueuePodJob(pod)
	}
}
