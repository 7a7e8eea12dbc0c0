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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
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
	// Pending says how long a Job whose flow has not started may wait, by
	// reason (DefaultPendingPolicy when nil).
	Pending *PendingPolicy
	// CancelCheckInterval is how often Prefect is asked for cancelled runs.
	CancelCheckInterval time.Duration
	// Workers process Jobs in parallel.
	Workers int
	// FailedPodLogLines is how many last lines of a failed flow container's
	// output go into the run log (0: DefaultFailedPodLogLines; below 0: none).
	FailedPodLogLines int
	// FinishedRunGrace is how long a run may be finished in Prefect while its
	// pod still runs before its Job is deleted (DefaultFinishedRunGrace when 0);
	// DriftCheckInterval is how often that is checked.
	FinishedRunGrace, DriftCheckInterval time.Duration
}

// manager watches the agent's Jobs, their pods, FailedCreate events and
// cluster-autoscaler's events about the pods.
type manager struct {
	a      *Agent
	cfg    ManageConfig
	policy PendingPolicy
	queue  workqueue.TypedRateLimitingInterface[string]

	jobs, pods, failedCreates, autoscaler cache.SharedIndexInformer

	reported *reportedSet
	waits    *waitTracker
	// held are the Jobs whose runs get heartbeats (heartbeat.go).
	held *heldRuns

	// gone holds, per Job key, pods deleted before they finished, as the
	// delete event can be the only sign of them.
	goneMu sync.Mutex
	gone   map[string][]*cachedPod

	// cancelSince is where the next cancellation check starts.
	cancelSince time.Time
	// finishedSince is when each finished run with a running pod was first
	// seen so (drift.go); only checkFinishedRuns uses it.
	finishedSince map[string]time.Time
}

// Indexes of the caches.
const (
	byJob     = "job"     // pods and events by their Job's namespace/name
	byPod     = "pod"     // events by their pod's namespace/name
	byFlowRun = "flowRun" // Jobs by flow run id
)

func (a *Agent) newManager() *manager {
	cfg := a.cfg.Manage
	policy := DefaultPendingPolicy()
	if cfg.Pending != nil {
		policy = *cfg.Pending
	}
	if cfg.CancelCheckInterval <= 0 {
		cfg.CancelCheckInterval = 10 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.FinishedRunGrace <= 0 {
		cfg.FinishedRunGrace = DefaultFinishedRunGrace
	}
	if cfg.DriftCheckInterval <= 0 {
		cfg.DriftCheckInterval = DefaultDriftCheckInterval
	}
	ns := a.cfg.Job.Namespace
	if cfg.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	m := &manager{
		a: a, cfg: cfg, policy: policy, reported: newReportedSet(), waits: a.metrics.waiting, held: newHeldRuns(), gone: map[string][]*cachedPod{}, finishedSince: map[string]time.Time{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "prefect-jobs"}),
	}
	kube := a.cfg.Kube
	labelled := func(o *metav1.ListOptions) { o.LabelSelector = manifest.LabelIdentifier }
	// Only this agent's Jobs (owner.go); pods keep the wider selector, as the
	// pods of Jobs adopted from an earlier version carry no identity, and a
	// pod whose Job is not in the cache is ignored.
	own := func(o *metav1.ListOptions) { o.LabelSelector = a.ownJobsSelector() }
	m.jobs = m.informer("jobs", &batchv1.Job{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		own(&o)
		return kube.BatchV1().Jobs(ns).List(ctx, o)
	}, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		own(&o)
		return kube.BatchV1().Jobs(ns).Watch(ctx, o)
	}, cache.Indexers{byFlowRun: func(obj any) ([]string, error) {
		if job, ok := obj.(*cachedJob); ok {
			return []string{job.Labels[manifest.LabelFlowRunID]}, nil
		}
		return nil, nil
	}})
	m.pods = m.informer("pods", &corev1.Pod{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		labelled(&o)
		return kube.CoreV1().Pods(ns).List(ctx, o)
	}, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		labelled(&o)
		return kube.CoreV1().Pods(ns).Watch(ctx, o)
	}, cache.Indexers{byJob: func(obj any) ([]string, error) {
		pod, ok := obj.(*cachedPod)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, ref := range pod.OwnerReferences {
			if ref.Kind == "Job" {
				keys = append(keys, pod.Namespace+"/"+ref.Name)
			}
		}
		return keys, nil
	}})
	events := func(selector fields.Selector, index string) cache.SharedIndexInformer {
		sel := func(o *metav1.ListOptions) { o.FieldSelector = selector.String() }
		return m.informer("events", &corev1.Event{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			sel(&o)
			return kube.CoreV1().Events(ns).List(ctx, o)
		}, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			sel(&o)
			return kube.CoreV1().Events(ns).Watch(ctx, o)
		}, cache.Indexers{index: func(obj any) ([]string, error) {
			if ev, ok := obj.(*cachedEvent); ok {
				return []string{ev.involved.Namespace + "/" + ev.involved.Name}, nil
			}
			return nil, nil
		}})
	}
	m.failedCreates = events(fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.kind", "Job"),
		fields.OneTermEqualSelector("reason", "FailedCreate")), byJob)
	m.autoscaler = events(fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.kind", "Pod"),
		fields.OneTermEqualSelector("source", "cluster-autoscaler")), byPod)

	_, _ = m.jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueueJob,
		UpdateFunc: func(_, obj any) { m.enqueueJob(obj) },
		DeleteFunc: m.enqueueJob,
	})
	if a.limits.enabled() {
		_, _ = m.jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(old, cur any) {
				o, ok1 := old.(*cachedJob)
				c, ok2 := cur.(*cachedJob)
				if ok1 && ok2 && !o.finished() && (c.finished() || c.DeletionTimestamp != nil) {
					a.limits.jobEnded(a.Poke)
				}
			},
			DeleteFunc: func(any) { a.limits.jobEnded(a.Poke) },
		})
	}
	_, _ = m.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueuePodJob,
		UpdateFunc: func(_, obj any) { m.enqueuePodJob(obj) },
		DeleteFunc: m.podDeleted,
	})
	_, _ = m.failedCreates.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueueEventJob,
		UpdateFunc: func(_, obj any) { m.enqueueEventJob(obj) },
	})
	_, _ = m.autoscaler.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueueEventPodJob,
		UpdateFunc: func(_, obj any) { m.enqueueEventPodJob(obj) },
	})
	return m
}

// informer builds a shared informer over a typed client's list and watch.
// A refusal (403) is kept as the agent's access problem, which fails
// /api/health with the verb and resource, until a list succeeds.
func (m *manager) informer(resource string, obj runtime.Object,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	indexers cache.Indexers) cache.SharedIndexInformer {
	access := &m.a.access
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			out, err := list(ctx, o)
			access.observe(resource, "list", err)
			return out, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			access.observe(resource, "watch", err)
			return w, err
		},
	}
	inf := cache.NewSharedIndexInformer(lw, obj, 0, indexers)
	_ = inf.SetTransform(compact)
	return inf
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
	pod, ok := obj.(*cachedPod)
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
	pod, ok := obj.(*cachedPod)
	if !ok {
		return
	}
	if pod.phase != corev1.PodSucceeded && pod.phase != corev1.PodFailed {
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

// peekGone returns the pods of a Job deleted before finishing; takeGone
// forgets them once they were reported.
func (m *manager) peekGone(key string) []*corev1.Pod {
	m.goneMu.Lock()
	defer m.goneMu.Unlock()
	var out []*corev1.Pod
	for _, p := range m.gone[key] {
		out = append(out, p.pod())
	}
	return out
}

func (m *manager) takeGone(key string) {
	m.goneMu.Lock()
	defer m.goneMu.Unlock()
	delete(m.gone, key)
}

func (m *manager) enqueueEventJob(obj any) {
	if ev, ok := obj.(*cachedEvent); ok {
		m.queue.Add(ev.involved.Namespace + "/" + ev.involved.Name)
	}
}

// enqueueEventPodJob queues the Job of the pod an event is about.
func (m *manager) enqueueEventPodJob(obj any) {
	ev, ok := obj.(*cachedEvent)
	if !ok {
		return
	}
	if pod, exists, _ := m.pods.GetIndexer().GetByKey(ev.involved.Namespace + "/" + ev.involved.Name); exists {
		m.enqueuePodJob(pod)
	}
}

// run starts the informers and workers and blocks until ctx ends.
func (m *manager) run(ctx context.Context) error {
	m.waits.reset()
	ns := m.a.cfg.Job.Namespace
	if m.cfg.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	m.a.adoptAndCountOthers(ctx, ns)
	informers := []cache.SharedIndexInformer{m.jobs, m.pods, m.failedCreates, m.autoscaler}
	var running sync.WaitGroup
	stop := make(chan struct{})
	for _, inf := range informers {
		running.Add(1)
		go func() {
			defer running.Done()
			inf.Run(stop)
		}()
	}
	defer func() {
		close(stop)
		running.Wait()
	}()
	synced := make([]cache.InformerSynced, 0, len(informers))
	for _, inf := range informers {
		synced = append(synced, inf.HasSynced)
	}
	defer m.a.index.publish(nil)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		m.queue.ShutDown()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watching the agent's Jobs: the caches did not sync")
	}
	// The first lists can be large and are garbage now; give that memory back.
	debug.FreeOSMemory()
	m.a.index.publish(m.jobs.GetIndexer())
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
	workers.Add(1)
	go func() {
		defer workers.Done()
		wait.UntilWithContext(ctx, m.sendHeartbeats, m.a.cfg.HeartbeatInterval)
	}()
	workers.Add(1)
	go func() {
		defer workers.Done()
		wait.UntilWithContext(ctx, m.checkFinishedRuns, m.cfg.DriftCheckInterval)
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

// getJob reads a Job from the cache.
func (m *manager) getJob(ns, name string) (*batchv1.Job, error) {
	obj, exists, err := m.jobs.GetIndexer().GetByKey(ns + "/" + name)
	if err != nil {
		return nil, err
	}
	job, ok := obj.(*cachedJob)
	if !exists || !ok {
		return nil, errNotFound(name)
	}
	return job.job(), nil
}

// facts reads a Job's pods and events from the caches.
func (m *manager) facts(job *batchv1.Job) jobFacts {
	key := job.Namespace + "/" + job.Name
	var f jobFacts
	objs, _ := m.pods.GetIndexer().ByIndex(byJob, key)
	for _, o := range objs {
		if pod, ok := o.(*cachedPod); ok && ownedBy(pod, job) {
			f.pods = append(f.pods, pod.pod())
		}
	}
	evs, _ := m.failedCreates.GetIndexer().ByIndex(byJob, key)
	for _, o := range evs {
		if ev, ok := o.(*cachedEvent); ok && ev.involved.UID == job.UID {
			f.failed = append(f.failed, ev.event())
		}
	}
	for _, pod := range f.pods {
		evs, _ := m.autoscaler.GetIndexer().ByIndex(byPod, pod.Namespace+"/"+pod.Name)
		for _, o := range evs {
			if ev, ok := o.(*cachedEvent); ok && ev.involved.UID == pod.UID {
				if f.autoscaler == nil {
					f.autoscaler = map[string][]*corev1.Event{}
				}
				f.autoscaler[pod.Name] = append(f.autoscaler[pod.Name], ev.event())
			}
		}
	}
	return f
}

func ownedBy(pod *cachedPod, job *batchv1.Job) bool {
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "Job" && ref.UID == job.UID {
			return true
		}
	}
	return false
}
