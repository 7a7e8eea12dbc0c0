// Command submit measures how fast the agent turns a burst of due flow runs
// into Jobs on the test bed's real control plane, next to the raw ceiling:
// the same number of Jobs created directly with client-go, in the same run.
//
//	go run ./bench/submit -runs 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-prefect/kubectl-prefect/bench/benchutil"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect/emulator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	runs := flag.Int("runs", 1000, "flow runs to schedule")
	workers := flag.Int("workers", 32, "parallel creates for the raw ceiling (the agent's default --concurrency)")
	qps := flag.Float64("qps", 100, "Kubernetes client QPS for both (the agent's default --kube-api-qps)")
	burst := flag.Int("burst", 200, "Kubernetes client burst for both (the agent's default --kube-api-burst)")
	flag.Parse()
	ctx := context.Background()

	fmt.Fprintln(os.Stderr, "starting the test bed cluster...")
	cluster, err := testbed.Start(ctx, 2)
	if err != nil {
		return err
	}
	defer cluster.Stop()

	bin, err := benchutil.BuildAgent()
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(bin))

	fmt.Printf("%d due flow runs, %d Jobs each way, one cluster, one run:\n\n", *runs, *runs)
	fmt.Printf("| Kubernetes client limits | agent: all Jobs + Submitted | agent jobs/s | raw client-go (%d workers) | raw jobs/s | agent / raw | agent peak RSS |\n|---|---|---|---|---|---|---|\n", *workers)
	for i, limits := range []struct {
		name  string
		qps   float64
		burst int
	}{{fmt.Sprintf("agent defaults (QPS %g, burst %d)", *qps, *burst), *qps, *burst}, {"unthrottled (QPS 5000, burst 10000)", 5000, 10000}} {
		fmt.Fprintf(os.Stderr, "raw: %d Jobs with client-go, %s...\n", *runs, limits.name)
		raw, err := rawCeiling(ctx, cluster, fmt.Sprintf("bench-raw-%d", i), *runs, *workers, float32(limits.qps), limits.burst)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "agent: %d due flow runs, %s...\n", *runs, limits.name)
		agentTime, rss, err := agentBurst(ctx, cluster, bin, fmt.Sprintf("bench-agent-%d", i), *runs, limits.qps, limits.burst)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %.2f s | %.0f | %.2f s | %.0f | %.2f | %.1f MiB |\n", limits.name,
			agentTime.Seconds(), float64(*runs)/agentTime.Seconds(), raw.Seconds(), float64(*runs)/raw.Seconds(),
			raw.Seconds()/agentTime.Seconds(), float64(rss)/1024)
	}
	return nil
}

func namespace(ctx context.Context, c *testbed.Cluster, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// rawCeiling creates n Jobs like the agent's with a pool of workers.
func rawCeiling(ctx context.Context, c *testbed.Cluster, ns string, n, workers int, qps float32, burst int) (time.Duration, error) {
	if err := namespace(ctx, c, ns); err != nil {
		return 0, err
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = qps, burst
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	jobs := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				job, _, err := manifest.BuildJob(ctx, manifest.AgentSettings{Namespace: ns, Backend: "server", API: "http://x"},
					manifest.FlowRun{ID: fmt.Sprintf("%s-%d", ns, i), Version: 1, FlowID: "flow", CoreVersion: "1.4.1"})
				if err == nil {
					_, err = client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return time.Since(start), nil
}

// agentBurst schedules n due runs and times the agent binary from its start
// until every run is Submitted with its Job created.
func agentBurst(ctx context.Context, c *testbed.Cluster, bin, ns string, n int, qps float64, burst int) (time.Duration, int64, error) {
	if err := namespace(ctx, c, ns); err != nil {
		return 0, 0, err
	}
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		return 0, 0, err
	}
	for i := 0; i < n; i++ {
		if _, err := em.AddFlowRun(emulator.FlowRunSpec{ScheduledStartTime: time.Now().Add(-time.Minute)}); err != nil {
			return 0, 0, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	srv := &http.Server{Handler: em.Handler()}
	go srv.Serve(ln)
	defer srv.Close()

	cmd := exec.Command(bin, "agent", "start", "--kubeconfig", c.Kubeconfig, "-n", ns, "--backend", "server",
		"--api", "http://"+ln.Addr().String(), "--kube-api-qps", fmt.Sprint(qps), "--kube-api-burst", strconv.Itoa(burst))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var peak int64
	for {
		if rss := peakOf(cmd.Process.Pid); rss > peak {
			peak = rss
		}
		done := 0
		for _, r := range em.FlowRuns() {
			if r.State == "Submitted" && len(r.Logs) > 0 {
				done++
			}
		}
		if done == n {
			elapsed := time.Since(start)
			list, err := c.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, 0, err
			}
			if len(list.Items) != n {
				return 0, 0, fmt.Errorf("%d Jobs for %d runs", len(list.Items), n)
			}
			if rss := peakOf(cmd.Process.Pid); rss > peak {
				peak = rss
			}
			return elapsed, peak, nil
		}
		if time.Since(start) > 10*time.Minute {
			return 0, 0, fmt.Errorf("only %d of %d runs submitted after 10 minutes", done, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func peakOf(pid int) int64 {
	_, peak := benchutil.Memory(pid)
	return peak
}
