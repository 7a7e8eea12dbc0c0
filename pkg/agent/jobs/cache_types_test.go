package jobs

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// TestCompactCacheKeepsWhatInspectReads runs inspect on typed pods and on
// the same pods after the informers' transform: the verdicts must match.
func TestCompactCacheKeepsWhatInspectReads(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecar := testPod("p", corev1.PodRunning, running("flow"))
	sidecar.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always}, {Name: "setup"}}
	sidecar.Status.InitContainerStatuses = []corev1.ContainerStatus{exited("proxy", 1)}
	evicted := testPod("p", corev1.PodFailed)
	evicted.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI"}}
	for name, pod := range map[string]*corev1.Pod{
		"sidecar exits":     testPod("p", corev1.PodRunning, running("flow"), exited("sidecar", 1)),
		"native sidecar":    sidecar,
		"flow exits":        testPod("p", corev1.PodRunning, exited("flow", 1)),
		"evicted":           evicted,
		"unschedulable":     unschedulable(testPod("p", corev1.PodPending)),
		"image pull":        testPod("p", corev1.PodPending, waitingOn("flow", "ErrImagePull", "not found")),
		"missing secret":    testPod("p", corev1.PodPending, waitingOn("flow", "CreateContainerConfigError", `secret "s" not found`)),
		"first is not flow": {ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{exited("main", 2)}}},
	} {
		cached, _ := compact(pod.DeepCopy())
		facts := func(p *corev1.Pod) jobFacts { return jobFacts{pods: []*corev1.Pod{p}, firstPod: "p"} }
		want := fmt.Sprint(inspect(testJob(), facts(pod), t0.Add(20*60e9), policy).problems)
		got := fmt.Sprint(inspect(testJob(), facts(cached.(*cachedPod).pod()), t0.Add(20*60e9), policy).problems)
		if got != want {
			t.Errorf("%s: from the cache %s, want %s", name, got, want)
		}
	}
}

// BenchmarkCacheMemory reports the heap held per Job and running pod in the
// caches, typed (as the informers decode them) and compact.
func BenchmarkCacheMemory(b *testing.B) {
	const jobs = 2000
	fill := func(transform func(any) (any, error)) float64 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		for i := 0; i < jobs; i++ {
			job, _, err := manifest.BuildJob(context.Background(), manifest.AgentSettings{Namespace: "flows", Backend: "server", API: "http://prefect:4200"},
				manifest.FlowRun{ID: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), Version: 2, FlowID: "f", CoreVersion: "1.4.1", FlowName: "etl", Name: "run", RunConfig: []byte("null")})
			if err != nil {
				b.Fatal(err)
			}
			job.UID = types.UID(fmt.Sprintf("uid-%d", i))
			pod := &corev1.Pod{ObjectMeta: *job.Spec.Template.ObjectMeta.DeepCopy(), Spec: *job.Spec.Template.Spec.DeepCopy()}
			pod.Name, pod.Namespace, pod.UID = job.Name+"-abcde", "flows", types.UID(fmt.Sprintf("pod-%d", i))
			pod.OwnerReferences = []metav1.OwnerReference{{Kind: "Job", Name: job.Name, UID: job.UID, APIVersion: "batch/v1"}}
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running("flow")},
				Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
			for _, obj := range []any{job, pod} {
				if transform != nil {
					obj, _ = transform(obj)
				}
				_ = store.Add(obj)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(store)
		return float64(after.HeapAlloc-before.HeapAlloc) / jobs
	}
	for i := 0; i < b.N; i++ {
		b.ReportMetric(fill(nil), "typed-B/job+pod")
		b.ReportMetric(fill(compact), "compact-B/job+pod")
	}
}
