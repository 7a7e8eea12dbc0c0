package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// The pod executor plays the kubelet's container runtime for the flow
// container of pods whose image is ImagePrefect (or ImageImportError, a
// broken environment): once kwok has the pod
// Running, it runs the container's command and args as a local process with
// the container's environment, the flow runner's virtual environment first
// on PATH and the test flows on PYTHONPATH; it keeps the process's output as
// the container's log, enforces the container's memory limit, and writes the
// container's terminated state with the real exit code to the pod's status.
// A pod that is deleted (or evicted) has its process killed.

// executor watches the cluster's pods and runs the ones it is for.
type executor struct {
	c      *Cluster
	bin    string // the flow runner's bin folder
	root   string // one folder per pod: home, log
	stop   context.CancelFunc
	mu     sync.Mutex
	procs  map[types.UID]*podProcess
	logger func(format string, args ...any)

	// The shadowing package of ImageImportError (executor_fates.go).
	brokenOnce sync.Once
	brokenDir  string
	brokenErr  error
}

// RequireFlowRunner starts the pod executor on the cluster if it is not
// running yet, and fails the test when the flow runner is not built. Under
// -short (no cluster) it skips the test, as Require does.
func (c *Cluster) RequireFlowRunner(t testing.TB) {
	t.Helper()
	c.Require(t)
	if err := c.StartExecutor(); err != nil {
		t.Fatal(err)
	}
}

// StartExecutor starts the pod executor once per cluster.
func (c *Cluster) StartExecutor() error {
	c.execOnce.Do(func() {
		bin, err := checkFlowRunner()
		if err != nil {
			c.execErr = err
			return
		}
		root := filepath.Join(c.dir(), "pods")
		if err := os.MkdirAll(root, 0o755); err != nil {
			c.execErr = err
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		x := &executor{c: c, bin: bin, root: root, stop: cancel, procs: map[types.UID]*podProcess{},
			logger: func(format string, args ...any) { fmt.Fprintf(os.Stderr, "test bed executor: "+format+"\n", args...) }}
		factory := informers.NewSharedInformerFactory(c.Client, 0)
		inf := factory.Core().V1().Pods().Informer()
		_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { x.observe(ctx, obj) },
			UpdateFunc: func(_, obj any) { x.observe(ctx, obj) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if p, ok := obj.(*corev1.Pod); ok {
					x.kill(p.UID, "the pod was deleted")
				}
			},
		})
		if err != nil {
			cancel()
			c.execErr = err
			return
		}
		factory.Start(ctx.Done())
		syncCtx, done := context.WithTimeout(ctx, time.Minute)
		defer done()
		if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
			cancel()
			c.execErr = fmt.Errorf("the pod executor could not list the cluster's pods")
			return
		}
		c.exec = x
	})
	return c.execErr
}

// stopExecutor kills every process the executor runs.
func (c *Cluster) stopExecutor() {
	if c.exec == nil {
		return
	}
	c.exec.stop()
	c.exec.mu.Lock()
	procs := make([]*podProcess, 0, len(c.exec.procs))
	for _, p := range c.exec.procs {
		procs = append(procs, p)
	}
	c.exec.mu.Unlock()
	for _, p := range procs {
		p.terminate("the test bed is stopping", 0)
	}
	for _, p := range procs {
		<-p.done
	}
}

// flowContainerIndex is the container the executor runs: the one named
// flow, else the first.
func flowContainerIndex(pod *corev1.Pod) int {
	for i, c := range pod.Spec.Containers {
		if c.Name == "flow" {
			return i
		}
	}
	return 0
}

// observe starts a pod's process once kwok has the pod Running, and kills it
// once the pod is being deleted.
func (x *executor) observe(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || len(pod.Spec.Containers) == 0 {
		return
	}
	i := flowContainerIndex(pod)
	if !executorImages[pod.Spec.Containers[i].Image] {
		return
	}
	if pod.DeletionTimestamp != nil {
		grace := time.Duration(0)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		}
		x.terminate(pod.UID, "the pod is being deleted", grace)
		return
	}
	if pod.Status.Phase != corev1.PodRunning {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, started := x.procs[pod.UID]; started {
		return
	}
	p := &podProcess{x: x, pod: pod.DeepCopy(), container: i, done: make(chan struct{})}
	x.procs[pod.UID] = p
	go p.run(ctx)
}

func (x *executor) kill(uid types.UID, why string) { x.terminate(uid, why, 0) }

func (x *executor) terminate(uid types.UID, why string, grace time.Duration) {
	x.mu.Lock()
	p := x.procs[uid]
	x.mu.Unlock()
	if p != nil {
		p.terminate(why, grace)
	}
}

// PodLog returns what the flow container of a pod run by the executor wrote
// (stdout and stderr, in order, without the runtime's line prefixes).
func (c *Cluster) PodLog(namespace, pod string) (string, error) {
	if c.exec == nil {
		return "", fmt.Errorf("the pod executor is not running")
	}
	c.exec.mu.Lock()
	var path string
	for _, p := range c.exec.procs {
		if p.pod.Namespace == namespace && p.pod.Name == pod {
			path = p.logPath()
		}
	}
	c.exec.mu.Unlock()
	if path == "" {
		return "", fmt.Errorf("the executor ran no pod %s/%s", namespace, pod)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(raw), "\n") {
		// timestamp stream tag content
		parts := strings.SplitN(line, " ", 4)
		if len(parts) == 4 {
			b.WriteString(parts[3])
		}
	}
	return b.String(), nil
}
