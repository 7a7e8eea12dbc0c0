// Command manage measures the agent at steady state while it manages many
// Jobs: its memory and its requests per minute to the Kubernetes and Prefect
// APIs, on the test bed's real control plane.
//
//	go run ./bench/manage -jobs 10000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	jobs := flag.Int("jobs", 10000, "Jobs for the agent to manage")
	nodes := flag.Int("nodes", 100, "simulated nodes (110 pods each)")
	window := flag.Duration("window", time.Minute, "steady-state measuring window")
	flag.Parse()
	ctx := context.Background()

	logf("starting the test bed cluster with %d nodes...", *nodes)
	cluster, err := testbed.Start(ctx, *nodes)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	const ns = "bench-manage"
	if _, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}

	em, err := emulator.New(emulator.Config{})
	if err != nil {
		return err
	}
	logf("creating %d running flow runs and their Jobs (pods that keep running)...", *jobs)
	began := time.Now()
	if err := createJobs(ctx, cluster, em, ns, *jobs); err != nil {
		return err
	}
	logf("  Jobs created in %s; waiting for their pods to run...", time.Since(began).Round(time.Second))
	if err := waitPodsRunning(ctx, cluster, ns, *jobs); err != nil {
		return err
	}
	logf("  all pods running after %s", time.Since(began).Round(time.Second))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go (&http.Server{Handler: em.Handler(), ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	metricsLn, _ := net.Listen("tcp", "127.0.0.1:0")
	metricsAddr := metricsLn.Addr().String()
	metricsLn.Close()

	bin, err := benchutil.BuildAgent()
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(bin))
	cmd := exec.Command(bin, "agent", "start", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "--backend", "server",
		"--api", "http://"+ln.Addr().String(), "--agent-address", metricsAddr, "--unschedulable-grace", "1h", "--profiling")
	cmd.Stderr, _ = os.Create(filepath.Join(os.TempDir(), "bench-manage-agent.log"))
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	logf("agent started; letting it settle for 30 s...")
	time.Sleep(30 * time.Second)
	kube0, prefect0 := kubeRequests(metricsAddr), prefectRequests(em)
	logf("measuring for %s...", *window)
	time.Sleep(*window)
	kube1, prefect1 := kubeRequests(metricsAddr), prefectRequests(em)
	perMinute := func(a, b int) float64 { return float64(b-a) / window.Minutes() }
	rss, hwm := benchutil.Memory(cmd.Process.Pid)
	if resp, err := http.Get("http://" + metricsAddr + "/debug/pprof/heap"); err == nil {
		f, _ := os.Create(filepath.Join(os.TempDir(), "bench-manage-heap.pprof"))
		_, _ = io.Copy(f, resp.Body)
		f.Close()
		resp.Body.Close()
	}

	fmt.Printf("| measure | value |\n|---|---|\n")
	fmt.Printf("| Jobs managed (pods running) | %d |\n", *jobs)
	fmt.Printf("| agent RSS at steady state | %.1f MiB |\n", float64(rss)/1024)
	fmt.Printf("| agent peak RSS | %.1f MiB |\n", float64(hwm)/1024)
	fmt.Printf("| Kubernetes API requests per minute | %.0f |\n", perMinute(kube0, kube1))
	fmt.Printf("| Prefect API requests per minute | %.0f |\n", perMinute(prefect0, prefect1))
	fmt.Printf("| Kubernetes API requests since start (list + watch) | %d |\n", kube1)

	logf("timing `kubectl prefect jobs` against `kubectl get jobs`...")
	ours, err := median(5, bin, "jobs", "--kubeconfig", cluster.Kubeconfig, "-n", ns)
	if err != nil {
		return err
	}
	kubectl, _ := testbed.Tool("kubectl")
	theirs, err := median(5, kubectl, "get", "jobs", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "-l", manifest.LabelIdentifier)
	if err != nil {
		return err
	}
	fmt.Printf("\n| listing %d Jobs (median of 5) | seconds |\n|---|---|\n", *jobs)
	fmt.Printf("| kubectl prefect jobs | %.2f |\n", ours.Seconds())
	fmt.Printf("| kubectl get jobs -l prefect.io/identifier | %.2f |\n", theirs.Seconds())
	fmt.Printf("| ratio | %.2f |\n", ours.Seconds()/theirs.Seconds())
	return nil
}

// median runs a command n times and returns its median wall time.
func median(n int, name string, args ...string) (time.Duration, error) {
	var times []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
		}
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[n/2], nil
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// createJobs makes n Submitted runs and, for each, the Job the agent would have made.
func createJobs(ctx context.Context, c *testbed.Cluster, em *emulator.Emulator, ns string, n int) error {
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				run, err := em.AddFlowRun(emulator.FlowRunSpec{State: "Running"})
				if err != nil {
					errs <- err
					return
				}
				j, _, err := manifest.BuildJob(ctx, manifest.AgentSettings{Namespace: ns, Backend: "server", API: "http://x"},
					manifest.FlowRun{ID: run.ID, Version: run.Version, FlowID: run.Flow.ID, CoreVersion: "1.4.1",
						RunConfig: []byte(`{"type":"KubernetesRun","image":"` + testbed.ImageRun + `","cpu_request":"1m","memory_request":"1Mi"}`)})
				if err == nil {
					_, err = c.Client.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
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

func waitPodsRunning(ctx context.Context, c *testbed.Cluster, ns string, n int) error {
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
		logf("  %d of %d pods running", running, n)
		time.Sleep(10 * time.Second)
	}
	return fmt.Errorf("pods did not all run within 20 minutes")
}

// kubeRequests sums the agent's prefect_agent_kube_api_requests_total.
func kubeRequests(addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	total := 0
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "prefect_agent_kube_api_requests_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += int(v)
		}
	}
	return total
}

func prefectRequests(em *emulator.Emulator) int {
	total := 0
	for _, n := range em.Requests() {
		total += n
	}
	return total
}
