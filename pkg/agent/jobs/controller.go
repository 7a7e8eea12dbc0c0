// Package jobs is the agent's Job controller, the Kubernetes -> Prefect half
// of the agent: it watches the Jobs the submitter (pkg/agent) created, their
// pods and the events about them, and reports to each Job's flow run what
// happens to it (a failure, a wait, a disruption, a give-up), cleans up
// finished Jobs, acts on cancelled runs, and keeps runs it holds on purpose
// alive. It is built by NewController from explicit dependencies, owns its
// queue, informers and workers, and offers Run(ctx, workers). The submitter
// reads its Job cache through Index, and nothing else.
package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/runlog"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Config sets how the Job controller manages the agent's Jobs.
type Config struct {
	// Namespace is the agent's namespace; AllNamespaces watches Jobs
	// everywhere instead.
	Namespace     string
	AllNamespaces bool
	// JobSelector selects the agent's own Jobs (its identity label).
	JobSelector string
	// DeleteFinishedJobs deletes Jobs once they finish (the original's default).
	DeleteFinishedJobs bool
	// KeepFailedJobs keeps failed Jobs for inspection while succeeded ones go.
	KeepFailedJobs bool
	// Pending says how long a Job whose flow has not started may wait, by
	// reason (DefaultPendingPolicy when nil).
	Pending *PendingPolicy
	// EndedCheckInterval is how often Prefect is asked for the runs that
	// were cancelled or finished since the last check (ended.go).
	EndedCheckInterval time.Duration
	// Workers process Jobs in parallel (Run's default).
	Workers int
	// FailedPodLogLines is how many last lines of a failed flow container's
	// output go into the run log (0: DefaultFailedPodLogLines; below 0: none).
	FailedPodLogLines int
	// FinishedRunGrace is how long a run may be finished in Prefect while its
	// pod still runs before its Job is deleted (DefaultFinishedRunGrace when
	// 0); it is looked at with each cancellation check.
	FinishedRunGrace time.Duration
	// HeartbeatInterval is how often the runs the controller holds on
	// purpose get a heartbeat (heartbeat.go).
	HeartbeatInterval time.Duration
}

// Prefect is what the controller reads from and writes to Prefect besides
// log lines; *prefect.Client has it.
type Prefect interface {
	FlowRunStates(ctx context.Context, ids []string) (map[string]prefect.RunState, error)
	SetFlowRunState(ctx context.Context, id string, version *int, state json.RawMessage) error
	ReadHistory(ctx context.Context, id string, taskRunIDs []string) (prefect.RunHistory, error)
	EndedRunsSince(ctx context.Context, since time.Time) ([]prefect.RunState, error)
	RunningTaskRunsBefore(ctx context.Context, flowRunID string, before time.Time) (string, []prefect.StaleTaskRun, error)
	HandBack(ctx context.Context, tr prefect.StaleTaskRun, message string) (bool, error)
	Heartbeat(ctx context.Context, id string) error
}

// EventRecorder records an Event on a Job (*Events does).
type EventRecorder interface {
	On(job *batchv1.Job, eventType, reason, message string)
}

// AccessObserver learns the outcome of each list and watch, so a refusal
// (403) can fail the agent's health check until the verb is granted.
type AccessObserver interface {
	Observe(resource, verb string, err error)
}

// noEvents and noAccess stand in for an EventRecorder and an AccessObserver
// not given.
type (
	noEvents struct{}
	noAccess struct{}
)

func (noEvents) On(*batchv1.Job, string, string, string) {}
func (noAccess) Observe(string, string, error)           {}

// Dependencies are what the controller works with. Kube, Prefect and Runs
// are required; without Events, Access or Metrics the controller records
// no Events, watches access for nobody and counts in metrics of its own.
type Dependencies struct {
	Kube    kubernetes.Interface
	Prefect Prefect
	// Runs writes the controller's lines to flow runs.
	Runs    *runlog.Writer
	Events  EventRecorder
	Metrics *Metrics
	Access  AccessObserver
	// Index is where the synced Job cache is published for the submitter.
	Index *Index
	// JobEnded, when set, is called when one of the Jobs finishes or goes
	// (the concurrency limits wake the poll with it).
	JobEnded func()
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Controller watches the agent's Jobs, their pods, FailedCreate events and
// cluster-autoscaler's events about the pods, and reports to the Jobs' runs.
type Controller struct {
	cfg     Config
	policy  PendingPolicy
	kube    kubernetes.Interface
	prefect Prefect
	runs    *runlog.Writer
	events  EventRecorder
	metrics *Metrics
	access  AccessObserver
	index   *Index
	now     func() time.Time
	queue   workqueue.TypedRateLimitingInterface[string]

	jobs, pods, failedCreates, autoscaler cache.SharedIndexInformer

	reported *reportedSet
	waits    *waitTracker
	// held are the Jobs whose runs get heartbeats (heartbeat.go).
	held *heldRuns

	// gone holds, per Job key, pods deleted before they finished, as the
	// delete event can be the only sign of them.
	goneMu sync.Mutex
	gone   map[string][]*cachedPod

	// endedSince is where the next check for ended runs starts (ended.go);
	// zero until the first check read the runs' states.
	endedSince time.Time
	// finishedSince is when each finished run with an active Job was first
	// seen so, and at which version (drift.go); cancelRetry holds the runs
	// whose cancellation failed. Only the ended-run check uses them.
	finishedSince map[string]sighting
	cancelRetry   map[string]bool
}

// FieldManager is the field manager of the agent's writes to its Jobs (the
// submitter's creates, the controller's annotations).
const FieldManager = "kubectl-prefect-agent"

// Indexes of the caches.
const (
	byJob     = "job"     // pods and events by their Job's namespace/name
	byPod     = "pod"     // events by their pod's namespace/name
	byFlowRun = "flowRun" // Jobs by flow run id
)

// Defaults of the controller's settings.
const (
	// DefaultEndedCheckInterval keeps the agent's steady Prefect traffic
	// at 15 requests a minute: 6 polls, 5 of these checks, 2 recovery
	// passes and 2 queue calls.
	DefaultEndedCheckInterval = 12 * time.Second
	DefaultWorkers            = 4
	// DefaultHeartbeatInterval is well inside Lazarus' 10 min.
	DefaultHeartbeatInterval = 2 * time.Minute
)

// NewController builds the controller, its queue and its informers; Run
// starts them. A controller runs once (a new leader term builds a new one).
func NewController(deps Dependencies, cfg Config) *Controller {
	policy := DefaultPendingPolicy()
	if cfg.Pending != nil {
		policy = *cfg.Pending
	}
	if cfg.EndedCheckInterval <= 0 {
		cfg.EndedCheckInterval = DefaultEndedCheckInterval
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.FinishedRunGrace <= 0 {
		cfg.FinishedRunGrace = DefaultFinishedRunGrace
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Index == nil {
		deps.Index = &Index{}
	}
	if deps.Events == nil {
		deps.Events = noEvents{}
	}
	if deps.Access == nil {
		deps.Access = noAccess{}
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	ns := cfg.Namespace
	if cfg.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	c := &Controller{
		cfg: cfg, policy: policy, kube: deps.Kube, prefect: deps.Prefect, runs: deps.Runs, events: deps.Events, metrics: deps.Metrics,
		access: deps.Access, index: deps.Index, now: deps.Now,
		reported: newReportedSet(), waits: deps.Metrics.waiting, held: newHeldRuns(), gone: map[string][]*cachedPod{}, finishedSince: map[string]sighting{}, cancelRetry: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "prefect-jobs"}),
	}
	kube := deps.Kube
	labelled := func(o *metav1.ListOptions) { o.LabelSelector = manifest.LabelIdentifier }
	// Only this agent's Jobs (pkg/agent/owner.go); pods keep the wider
	// selector, as the pods of Jobs adopted from an earlier version carry no
	// identity, and a pod whose Job is not in the cache is ignored.
	own := func(o *metav1.ListOptions) { o.LabelSelector = cfg.JobSelector }
	c.jobs = c.informer("jobs", &batchv1.Job{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
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
	c.pods = c.informer("pods", &corev1.Pod{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
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
		return c.informer("events", &corev1.Event{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
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
	c.failedCreates = events(fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.kind", "Job"),
		fields.OneTermEqualSelector("reason", "FailedCreate")), byJob)
	c.autoscaler = events(fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.kind", "Pod"),
		fields.OneTermEqualSelector("source", "cluster-autoscaler")), byPod)

	_, _ = c.jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueJob,
		UpdateFunc: func(_, obj any) { c.enqueueJob(obj) },
		DeleteFunc: c.enqueueJob,
	})
	if deps.JobEnded != nil {
		_, _ = c.jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(old, cur any) {
				before, ok1 := old.(*cachedJob)
				after, ok2 := cur.(*cachedJob)
				if ok1 && ok2 && !before.finished() && (after.finished() || after.DeletionTimestamp != nil) {
					deps.JobEnded()
				}
			},
			DeleteFunc: func(any) { deps.JobEnded() },
		})
	}
	_, _ = c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueuePodJob,
		UpdateFunc: func(_, obj any) { c.enqueuePodJob(obj) },
		DeleteFunc: c.podDeleted,
	})
	_, _ = c.failedCreates.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueEventJob,
		UpdateFunc: func(_, obj any) { c.enqueueEventJob(obj) },
	})
	_, _ = c.autoscaler.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueEventPodJob,
		UpdateFunc: func(_, obj any) { c.enqueueEventPodJob(obj) },
	})
	return c
}

// Run starts the informers, then, once their caches synced, publishes the
// Job cache to the Index and starts workers Job workers (Config.Workers when
// 0) and the periodic checks. It blocks until ctx ends and each worker
// finished the Job in hand.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if workers <= 0 {
		workers = c.cfg.Workers
	}
	c.waits.reset()
	informers := []cache.SharedIndexInformer{c.jobs, c.pods, c.failedCreates, c.autoscaler}
	var informing sync.WaitGroup
	stop := make(chan struct{})
	for _, inf := range informers {
		informing.Add(1)
		go func() {
			defer informing.Done()
			inf.Run(stop)
		}()
	}
	defer func() {
		close(stop)
		informing.Wait()
	}()
	synced := make([]cache.InformerSynced, 0, len(informers))
	for _, inf := range informers {
		synced = append(synced, inf.HasSynced)
	}
	defer c.index.publish(nil)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		c.queue.ShutDown()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watching the agent's Jobs: the caches did not sync")
	}
	// The first lists can be large and are garbage now; give that memory back.
	debug.FreeOSMemory()
	c.index.publish(c.jobs.GetIndexer())
	klog.FromContext(ctx).Info("Managing the agent's Jobs", "namespace", c.cfg.Namespace, "allNamespaces", c.cfg.AllNamespaces)
	var running sync.WaitGroup
	for i := 0; i < workers; i++ {
		running.Add(1)
		go func() {
			defer running.Done()
			c.worker(ctx)
		}()
	}
	running.Add(1)
	go func() {
		defer running.Done()
		wait.UntilWithContext(ctx, c.checkEndedRuns, c.cfg.EndedCheckInterval)
	}()
	running.Add(1)
	go func() {
		defer running.Done()
		wait.UntilWithContext(ctx, c.sendHeartbeats, c.cfg.HeartbeatInterval)
	}()
	<-ctx.Done()
	// Let each worker finish the Job in hand, so a report is never left
	// written to the run but unrecorded on the Job.
	c.queue.ShutDown()
	running.Wait()
	return nil
}

// syncTimeout bounds the work on one Job, which outlives a stop signal.
const syncTimeout = 30 * time.Second

func (c *Controller) worker(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		func() {
			defer c.queue.Done(key)
			syncCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), syncTimeout)
			defer cancel()
			err := c.sync(syncCtx, key)
			if err != nil {
				klog.FromContext(ctx).Error(err, "Managing Job failed; will retry", "job", key)
				c.queue.AddRateLimited(key)
			} else {
				c.queue.Forget(key)
			}
			// Counted once the sync is over and the key requeued or forgotten.
			c.metrics.countSync(err)
		}()
	}
}

// getJob reads a Job from the cache.
func (c *Controller) getJob(ns, name string) (*batchv1.Job, error) {
	obj, exists, err := c.jobs.GetIndexer().GetByKey(ns + "/" + name)
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
func (c *Controller) facts(job *batchv1.Job) jobFacts {
	key := job.Namespace + "/" + job.Name
	var f jobFacts
	objs, _ := c.pods.GetIndexer().ByIndex(byJob, key)
	for _, o := range objs {
		if pod, ok := o.(*cachedPod); ok && ownedBy(pod, job) {
			f.pods = append(f.pods, pod.pod())
		}
	}
	evs, _ := c.failedCreates.GetIndexer().ByIndex(byJob, key)
	for _, o := range evs {
		if ev, ok := o.(*cachedEvent); ok && ev.involved.UID == job.UID {
			f.failed = append(f.failed, ev.event())
		}
	}
	for _, pod := range f.pods {
		evs, _ := c.autoscaler.GetIndexer().ByIndex(byPod, pod.Namespace+"/"+pod.Name)
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

func errNotFound(name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Group: "batch", Resource: "jobs"}, name)
}

func ownedBy(pod *cachedPod, job *batchv1.Job) bool {
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "Job" && ref.UID == job.UID {
			return true
		}
	}
	return false
}
