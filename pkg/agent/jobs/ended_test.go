package jobs

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// endedBed is a controller whose caches the test fills, a fake clientset
// holding the same Jobs, and the Server-mode emulator, all on one clock.
type endedBed struct {
	t     *testing.T
	em    *emulator.Emulator
	kube  *fake.Clientset
	c     *Controller
	mu    sync.Mutex
	clock time.Time
	asked map[string]int
}

func newEndedBed(t *testing.T) *endedBed {
	b := &endedBed{t: t, clock: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	now := func() time.Time { b.mu.Lock(); defer b.mu.Unlock(); return b.clock }
	em, err := emulator.New(emulator.Config{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em.Handler())
	t.Cleanup(srv.Close)
	b.em, b.kube = em, fake.NewClientset()
	b.c = testController(newClient(srv.URL, ""), b.kube, Config{FinishedRunGrace: 2 * time.Minute})
	b.c.now = now
	b.asked = em.Requests()
	return b
}

func (b *endedBed) advance(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.clock = b.clock.Add(d)
}

// runningJob adds a Running run with a Job whose pod runs.
func (b *endedBed) runningJob(name string) string {
	run, err := b.em.AddFlowRun(emulator.FlowRunSpec{State: "Running"})
	if err != nil {
		b.t.Fatal(err)
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "flows", UID: types.UID("uid-" + name),
		Labels: map[string]string{manifest.LabelFlowRunID: run.ID}}}
	if _, err := b.kube.BatchV1().Jobs("flows").Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		b.t.Fatal(err)
	}
	if err := b.c.jobs.GetIndexer().Add(&cachedJob{ObjectMeta: job.ObjectMeta}); err != nil {
		b.t.Fatal(err)
	}
	pod := &cachedPod{ObjectMeta: metav1.ObjectMeta{Name: name + "-pod", Namespace: "flows",
		OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Name: name, UID: job.UID}}}, phase: corev1.PodRunning, flowContainer: "flow"}
	if err := b.c.pods.GetIndexer().Add(pod); err != nil {
		b.t.Fatal(err)
	}
	return run.ID
}

func (b *endedBed) set(runID, state string) {
	b.advance(time.Second)
	if _, err := b.em.SetFlowRunState(runID, state, "set by hand"); err != nil {
		b.t.Fatal(err)
	}
}

// check runs one check and returns the requests it sent, by operation.
func (b *endedBed) check() map[string]int {
	b.c.checkEndedRuns(context.Background())
	now := b.em.Requests()
	sent := map[string]int{}
	for op, n := range now {
		if d := n - b.asked[op]; d > 0 && op != "WriteRunLogs" {
			sent[op] = d
		}
	}
	b.asked = now
	return sent
}

func (b *endedBed) jobExists(name string) bool {
	_, err := b.kube.BatchV1().Jobs("flows").Get(context.Background(), name, metav1.GetOptions{})
	return err == nil
}

func (b *endedBed) expectSent(sent map[string]int, want string) {
	b.t.Helper()
	var got []string
	for _, op := range []string{"FlowRunStates", "EndedRunsSince"} {
		for i := 0; i < sent[op]; i++ {
			got = append(got, op)
		}
	}
	if strings.Join(got, " ") != want || len(sent) > len(got) {
		b.t.Fatalf("requests %v, want %q", sent, want)
	}
}

// TestEndedRunsCheck follows the check over a controller's life: its
// first check reads its runs' states by id, later ones ask only for what
// changed; a run finished by hand loses its Job after the grace, once its
// state is read again unchanged; a run set running again meanwhile keeps
// it; a run finished again at another version starts its grace again; a
// cancellation whose delete fails is tried again, by id once the window has
// moved past it.
func TestEndedRunsCheck(t *testing.T) {
	b := newEndedBed(t)
	finished := b.runningJob("finished")
	restarted := b.runningJob("restarted")
	refinished := b.runningJob("refinished")
	cancelled := b.runningJob("cancelled")
	b.set(finished, "Success") // T+1

	b.expectSent(b.check(), "FlowRunStates")
	b.advance(12 * time.Second) // T+13
	b.expectSent(b.check(), "EndedRunsSince")

	b.set(restarted, "Success")  // T+14
	b.set(refinished, "Success") // T+15
	b.advance(12 * time.Second)  // T+27: both seen finished
	b.expectSent(b.check(), "EndedRunsSince")
	b.set(restarted, "Scheduled") // restarted from the UI, running again
	b.set(restarted, "Running")
	b.set(refinished, "Scheduled") // and this one finished again
	b.set(refinished, "Running")
	b.set(refinished, "Success")

	// cancelled is cancelled by hand; deleting its Job fails twice.
	failures := 2
	b.kube.PrependReactor("delete", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.DeleteAction).GetName() == "cancelled" && failures > 0 {
			failures--
			return true, nil, errors.New("the API server is having a moment")
		}
		return false, nil, nil
	})
	b.set(cancelled, "Cancelled") // T+33
	b.advance(12 * time.Second)   // T+45
	b.expectSent(b.check(), "EndedRunsSince")
	if !b.jobExists("cancelled") || !b.c.cancelRetry[cancelled] {
		t.Fatalf("the failed cancellation is not kept for another try: Job there %v, retry %v", b.jobExists("cancelled"), b.c.cancelRetry)
	}
	if want := b.clock.Add(-endedOverlap); !b.c.endedSince.Equal(want) {
		t.Fatalf("the window stayed at %s after a failed cancellation, want %s", b.c.endedSince, want)
	}
	b.advance(70 * time.Second) // T+115: still in the window; fails again
	b.expectSent(b.check(), "EndedRunsSince")
	if !b.jobExists("cancelled") || failures != 0 {
		t.Fatalf("the cancellation was not tried again from the window: %d failures left", failures)
	}

	// T+127: the window has moved past the cancellation, which is read by
	// id and done; finished's grace is over: read again, its Job deleted.
	b.advance(12 * time.Second)
	b.expectSent(b.check(), "FlowRunStates FlowRunStates EndedRunsSince")
	if b.jobExists("cancelled") || len(b.c.cancelRetry) != 0 {
		t.Fatalf("the cancellation was not tried again by id: Job there %v, retry %v", b.jobExists("cancelled"), b.c.cancelRetry)
	}
	if b.jobExists("finished") {
		t.Fatalf("the Job of a run finished for the grace is still there")
	}
	got, _ := b.em.FlowRun(finished)
	if !strings.Contains(strings.Join(logMessages(got), "\n"), "Deleted Job finished: the flow run is Success in Prefect but its pod still ran 2m0s later") {
		t.Fatalf("no line on the finished run: %q", logMessages(got))
	}

	// T+151: restarted's grace is over, but it runs again: it keeps its Job.
	b.advance(24 * time.Second)
	b.expectSent(b.check(), "FlowRunStates EndedRunsSince")
	if _, kept := b.c.finishedSince[restarted]; kept || !b.jobExists("restarted") {
		t.Fatalf("a run running again: sighting kept %v, Job there %v", kept, b.jobExists("restarted"))
	}
	// refinished was seen finished again at T+45: its grace runs from there.
	if !b.jobExists("refinished") {
		t.Fatalf("the Job of a run finished again at T+32 was deleted before its new grace")
	}
	b.advance(24 * time.Second) // T+175
	b.expectSent(b.check(), "FlowRunStates EndedRunsSince")
	if b.jobExists("refinished") {
		t.Fatalf("the Job of a run finished again is still there after its grace")
	}
}

func logMessages(r emulator.FlowRun) []string {
	var out []string
	for _, l := range r.Logs {
		out = append(out, l.Message)
	}
	return out
}
