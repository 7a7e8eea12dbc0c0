package agent

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// ManageConfig sets how the agent manages the Jobs it launched.
type ManageConfig struct {
	// AllNamespaces watches Jobs everywhere instead of the agent's namespace.
	AllNamespaces bool
	// DeleteFinishedJobs deletes Jobs once they finish (the original's default).
	DeleteFinishedJobs bool
	// KeepFailedJobs keeps failed Jobs for inspection while succeeded ones go.
	KeepFailedJobs bool
	// UnschedulableGrace is how long a pod may stay unschedulable before it is reported.
	UnschedulableGrace time.Duration
	// CancelCheckInterval is how often the runs of active Jobs are checked for cancellation.
	CancelCheckInterval time.Duration
	// Workers process Jobs in parallel.
	Workers int
}

// manager watches the agent's Jobs, their pods and FailedCreate events.
type manager struct {
	a      *Agent
	cfg    ManageConfig
	queue  workqueue.TypedRateLimitingInterface[string]
	jobs   batchlisters.JobLister
	pods   corelisters.PodLister
	events cache.Indexer
	synced []cache.InformerSynced

	factories []informers.SharedInformerFactory
	reported  *reportedSet

	// gone holds, per Job key, pods deleted before they finished, as the
	// delete event can be the only sign of them.
	goneMu sync.Mutex
	gone   map[string][]*corev1.Pod
}

const eventsByJob = "involvedJob"

func (a *Agent) newManager() *manager {
	cfg := a.cfg.Manage
	if cfg.UnschedulableGrace <= 0 {
		cfg.UnschedulableGrace = 2 * time.Minute
	}
	if cfg.CancelCheckInterval <= 0 {
		cfg.CancelCheckInterval = 10 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	ns := a.cfg.Job.Namespace
	if cfg.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	m := &manager{
		a: a, cfg: cfg, reported: newReportedSet(), gone: map[string][]*corev1.Pod{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "prefect-jobs"}),
	}
	// Only the agent's objects, selected by the server; managed fields dropped.
	labelled := informers.NewSharedInformerFactoryWithOptions(a.cfg.Kube, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = manifest.LabelIdentifier }),
		informers.WithTransform(dropManagedFields))
	failedCreates := informers.NewSharedInformerFactoryWithOptions(a.cfg.Kube, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.kind", "Job"),
				fields.OneTermEqualSelector("reason", "FailedCreate")).String()
		}),
		informers.WithTransform(dropManagedFields))
	m.factories = []informers.SharedInformerFactory{labelled, failedCreates}

	jobInformer := labelled.Batch().V1().Jobs()
	podInformer := labelled.Core().V1().Pods()
	eventInformer := failedCreates.Core().V1().Events()
	_ = eventInformer.Informer().AddIndexers(cache.Indexers{eventsByJob: func(obj any) ([]string, error) {
		ev, ok := obj.(*corev1.Event)
		if !ok {
			return nil, nil
		}
		return []string{ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name}, nil
	}})
	m.jobs, m.pods, m.events = jobInformer.Lister(), podInformer.Lister(), eventInformer.Informer().GetIndexer()
	m.synced = []cache.InformerSynced{jobInformer.Informer().HasSynced, podInformer.Informer().HasSynced, eventInformer.Informer().HasSynced}

	_, _ = jobInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueueJob,
		UpdateFunc: func(_, obj any) { m.enqueueJob(obj) },
		DeleteFunc: m.enqueueJob,
	})
	_, _ = podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueuePodJob,
		UpdateFunc: func(_, obj any) { m.enqueuePodJob(obj) },
		DeleteFunc: m.podDeleted,
	})
	_, _ = eventInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueueEventJob,
		UpdateFunc: func(_, obj any) { m.enqueueEventJob(obj) },
	})
	return m
}

// dropManagedFields keeps the informers' memory to what the agent reads:
// no managed fields, no Job spec, and of a pod's spec only its node.
func dropManagedFields(obj any) (any, error) {
	switch o := obj.(type) {
	case *batchv1.Job:
		o.Spec = batchv1.JobSpec{Completions: o.Spec.Completions}
	case *corev1.Pod:
		o.Spec = corev1.PodSpec{NodeName: o.Spec.NodeName}
		o.Status = leanPodStatus(o.Status)
	}
	if acc, ok := obj.(metav1.ObjectMetaAccessor); ok {
		acc.GetObjectMeta().SetManagedFields(nil)
	}
	return obj, nil
}

// leanPodStatus keeps the parts of a pod's status inspect reads.
func leanPodStatus(st corev1.PodStatus) corev1.PodStatus {
	lean := corev1.PodStatus{Phase: st.Phase, Reason: st.Reason, Message: st.Message}
	for _, c := range st.Conditions {
		if c.Type == corev1.PodScheduled {
			lean.Conditions = append(lean.Conditions, corev1.PodCondition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message})
		}
	}
	leanStatuses := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		var out []corev1.ContainerStatus
		for _, cs := range in {
			out = append(out, corev1.ContainerStatus{Name: cs.Name, Image: cs.Image, State: cs.State})
		}
		return out
	}
	lean.InitContainerStatuses = leanStatuses(st.InitContainerStatuses)
	lean.ContainerStatuses = leanStatuses(st.ContainerStatuses)
	return lean
}

func (m *manager) enqueueJob(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		m.queue.Add(key)
	}
}

func (m *manager) enqueuePodJob(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "Job" {
			m.queue.Add(pod.Namespace + "/" + ref.Name)
		}
	}
}

// podDeleted remembers a pod that went away before finishing.
func (m *manager) podDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		for _, ref := range pod.OwnerReferences {
			if ref.Kind == "Job" {
				m.goneMu.Lock()
				key := pod.Namespace + "/" + ref.Name
				m.gone[key] = append(m.gone[key], pod)
				m.goneMu.Unlock()
			}
		}
	}
	m.enqueuePodJob(pod)
}

// takeGone returns and forgets the pods of a Job deleted before finishing.
func (m *manager) takeGone(key string) []*corev1.Pod {
	m.goneMu.Lock()
	defer m.goneMu.Unlock()
	pods := m.gone[key]
	delete(m.gone, key)
	return pods
}

func (m *manager) enqueueEventJob(obj any) {
	if ev, ok := obj.(*corev1.Event); ok {
		m.queue.Add(ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name)
	}
}

// run starts the informers and workers and blocks until ctx ends.
func (m *manager) run(ctx context.Context) error {
	for _, f := range m.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range m.factories {
			f.Shutdown()
		}
	}()
	if !cache.WaitForCacheSync(ctx.Done(), m.synced...) {
		m.queue.ShutDown()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watching the agent's Jobs: the caches did not sync")
	}
	// The first lists can be large and are garbage now; give that memory back.
	debug.FreeOSMemory()
	klog.FromContext(ctx).Info("Managing the agent's Jobs", "namespace", m.a.cfg.Job.Namespace, "allNamespaces", m.cfg.AllNamespaces)
	var workers sync.WaitGroup
	for i := 0; i < m.cfg.Workers; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			m.worker(ctx)
		}()
	}
	workers.Add(1)
	go func() {
		defer workers.Done()
		wait.UntilWithContext(ctx, m.checkCancellations, m.cfg.CancelCheckInterval)
	}()
	<-ctx.Done()
	// Let each worker finish the Job in hand, so a report is never left
	// written to the run but unrecorded on the Job.
	m.queue.ShutDown()
	workers.Wait()
	return nil
}

// syncTimeout bounds the work on one Job, which outlives a stop signal.
const syncTimeout = 30 * time.Second

func (m *manager) worker(ctx context.Context) {
	for {
		key, quit := m.queue.Get()
		if quit {
			return
		}
		func() {
			defer m.queue.Done(key)
			syncCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), syncTimeout)
			defer cancel()
			if err := m.sync(syncCtx, key); err != nil {
				klog.FromContext(ctx).Error(err, "Managing Job failed; will retry", "job", key)
				m.queue.AddRateLimited(key)
				return
			}
			m.queue.Forget(key)
		}()
	}
}

// jobPods and jobEvents read a Job's pods and FailedCreate events from the caches.
func (m *manager) jobPods(job *batchv1.Job) ([]*corev1.Pod, error) {
	id := job.Labels[manifest.LabelIdentifier]
	sel := labels.SelectorFromSet(labels.Set{manifest.LabelIdentifier: id})
	return m.pods.Pods(job.Namespace).List(sel)
}

func (m *manager) jobEvents(job *batchv1.Job) []*corev1.Event {
	objs, _ := m.events.ByIndex(eventsByJob, job.Namespace+"/"+job.Name)
	var out []*corev1.Event
	for _, o := range objs {
		if ev, ok := o.(*corev1.Event); ok && ev.InvolvedObject.UID == job.UID {
			out = append(out, ev)
		}
	}
	return out
}
