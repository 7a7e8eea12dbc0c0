package benchutil

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// Logf prints one progress line on stderr.
func Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// CreateRunJobs adds n flow runs to the emulator (spec(i) describes the i-th)
// and creates, for each, the Job an agent with these settings would have made
// for it, 32 at a time.
func CreateRunJobs(ctx context.Context, c *testbed.Cluster, em *emulator.Emulator, settings manifest.AgentSettings, n int, spec func(i int) emulator.FlowRunSpec) error {
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				s := spec(i)
				run, err := em.AddFlowRun(s)
				if err != nil {
					errs <- err
					return
				}
				j, _, err := manifest.BuildJob(ctx, settings,
					manifest.FlowRun{ID: run.ID, Version: run.Version, FlowID: run.Flow.ID, CoreVersion: "1.4.1", FlowName: s.Flow.Name, Name: run.Name,
						RunConfig: []byte(`{"type":"KubernetesRun","image":"` + testbed.ImageRun + `","cpu_request":"1m","memory_request":"1Mi"}`)})
				if err == nil {
					_, err = c.Client.BatchV1().Jobs(settings.Namespace).Create(ctx, j, metav1.CreateOptions{})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			close(work)
			return err
		case work <- i:
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// WaitPodsRunning waits up to 20 minutes until n pods of the namespace run.
func WaitPodsRunning(ctx context.Context, c *testbed.Cluster, ns string, n int) error {
	deadline := time.Now().Add(20 * time.Minute)
	for time.Now().Before(deadline) {
		running, cont := 0, ""
		for {
			list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 2000, Continue: cont})
			if err != nil {
				return err
			}
			for _, p := range list.Items {
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
			if cont = list.Continue; cont == "" {
				break
			}
		}
		if running >= n {
			return nil
		}
		Logf("  %d of %d pods running", running, n)
		time.Sleep(10 * time.Second)
	}
	return fmt.Errorf("pods did not all run within 20 minutes")
}
