package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// limitedAgent runs prefect-agent, as the image does, under --limit 10 and
// --limit label=gpu:2, keeping finished Jobs so each run's Job can be counted.
func limitedAgent(api, ns string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "prefect-agent"), "-n", ns, "--api", api, "--agent-name", "limited-agent",
		"-l", "k8s", "-l", "gpu", "--limit", "10", "--limit", "label=gpu:2", "--delete-finished-jobs=false")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "PREFECT__BACKEND=server")
	return cmd
}

// jobWatcher samples the namespace's unfinished Jobs, independently of the
// agent, and keeps the most it saw at once, in all and for gpu runs.
type jobWatcher struct {
	mu              sync.Mutex
	maxAll, maxGPU  int
	samples         int
	unfinished, all int
}

func (w *jobWatcher) run(ctx context.Context, t *testing.T, ns string, gpu map[string]bool) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		list, err := cluster.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			all, gpus := 0, 0
			for _, j := range list.Items {
				if finishedJob(j) || j.DeletionTimestamp != nil {
					continue
				}
				all++
				if gpu[j.Labels[manifest.LabelFlowRunID]] {
					gpus++
				}
			}
			w.mu.Lock()
			w.maxAll, w.maxGPU = max(w.maxAll, all), max(w.maxGPU, gpus)
			w.samples++
			w.unfinished, w.all = all, len(list.Items)
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *jobWatcher) seen() (maxAll, maxGPU, samples, unfinished, all int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxAll, w.maxGPU, w.samples, w.unfinished, w.all
}

func finishedJob(j batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// TestConcurrencyLimitsHoldAcrossASIGKILL: 300 due runs, three in every ten
// labelled gpu (in a row, so the gpu limit binds as well as the overall one), under --limit 10 and --limit label=gpu:2; the agent is
// SIGKILLed once half the runs have their Job, and started again. A watcher
// sampling the Jobs twice a second never sees more than 10 (2 for gpu)
// unfinished; every run ends Submitted with exactly one Job, which ran.
func TestConcurrencyLimitsHoldAcrossASIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	t.Parallel() // beside the probes' 3-minute test, which mostly waits
	const runs = 300
	em, srv := startEmulator(t)
	ns := cluster.Namespace(t)
	gpu := map[string]bool{}
	ids := make([]string, 0, runs)
	start := time.Now().Add(-time.Minute)
	for i := range runs {
		labels := []string{"k8s"}
		if i%10 < 3 {
			labels = append(labels, "gpu")
		}
		run, err := em.AddFlowRun(emulator.FlowRunSpec{Labels: labels, ScheduledStartTime: start.Add(time.Duration(i) * time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
		gpu[run.ID] = i%10 < 3
	}
	ctx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	w := &jobWatcher{}
	go w.run(ctx, t, ns, gpu)

	began := time.Now()
	first := startAgentProcess(t, limitedAgent(srv.URL, ns))
	deadline := time.Now().Add(2 * time.Minute)
	for tallyRuns(t, em, ns, ids).submitted+tallyRuns(t, em, ns, ids).stranded < runs/2 {
		if time.Now().After(deadline) {
			_ = first.cmd.Process.Kill()
			t.Fatalf("half the runs not submitted within 2 min: %+v; log:\n%s", tallyRuns(t, em, ns, ids), tail(first.stderr.String(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	atKill := tallyRuns(t, em, ns, ids)
	second := startAgentProcess(t, limitedAgent(srv.URL, ns))
	defer func() {
		_ = second.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-second.exited:
		case <-time.After(time.Minute):
			_ = second.cmd.Process.Kill()
		}
	}()
	deadline = time.Now().Add(4 * time.Minute)
	for {
		c := tallyRuns(t, em, ns, ids)
		_, _, _, unfinished, all := w.seen()
		if c.submitted == runs && c.duplicates == 0 && unfinished == 0 && all == runs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not done 4 min after the restart: %+v, %d of %d Jobs unfinished; log:\n%s", c, unfinished, all, tail(second.stderr.String(), 40))
		}
		select {
		case err := <-second.exited:
			t.Fatalf("the restarted agent exited (%v):\n%s", err, tail(second.stderr.String(), 40))
		case <-time.After(250 * time.Millisecond):
		}
	}
	took := time.Since(began)
	maxAll, maxGPU, samples, _, _ := w.seen()
	if maxAll > 10 || maxGPU > 2 {
		t.Fatalf("the watcher saw %d unfinished Jobs (%d of gpu runs) at once, want at most 10 (2)", maxAll, maxGPU)
	}
	if maxAll < 10 || maxGPU < 2 {
		t.Fatalf("the watcher saw at most %d unfinished Jobs (%d gpu): the limits were never reached, the test proves nothing", maxAll, maxGPU)
	}
	// Every Job ran to completion, and held runs were told why, once per agent.
	list, err := cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range list.Items {
		if !finishedJob(j) {
			t.Fatalf("Job %s did not finish", j.Name)
		}
	}
	told, most := 0, 0
	for _, id := range ids {
		r, _ := em.FlowRun(id)
		n := 0
		for _, l := range r.Logs {
			if strings.HasPrefix(l.Message, "Waiting for a slot: concurrency limit ") {
				n++
			}
		}
		if n > 0 {
			told++
		}
		most = max(most, n)
	}
	if told == 0 || most > 2 {
		t.Fatalf("%d held runs were told why, at most %d times each; want some, and once per agent process at most", told, most)
	}
	if !strings.Contains(second.stderr.String(), `"Concurrency limits" limits="10 label=gpu:2"`) {
		t.Fatalf("the restarted agent did not name its limits:\n%s", tail(second.stderr.String(), 20))
	}
	t.Logf("%d runs (%d gpu) in %s, SIGKILLed at %d Submitted (%d without a Job yet): at most %d unfinished Jobs (%d gpu) in %d samples; %d held runs told why (at most %d lines each)",
		runs, runs/10, took.Round(time.Second), atKill.submitted+atKill.stranded, atKill.stranded, maxAll, maxGPU, samples, told, most)
}
