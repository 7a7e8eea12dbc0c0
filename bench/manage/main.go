// Command manage measures prefect-agent, built as released, at steady state
// while it manages many Jobs with running pods (100 and 10,000 by default,
// side by side in one run): its memory and its requests per minute to the
// Kubernetes and Prefect APIs, on the test bed's real control plane. Then it
// times `kubectl prefect jobs` against `kubectl get jobs`. `make bench-manage`
// runs it.
//
//	go run ./bench/manage -jobs 100,10000
package main

import (
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
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/bench/benchutil"
	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

// The targets of issue 12, printed next to the measurements.
const (
	targetPeakMiB        = 60.0 // at 10,000 Jobs
	targetPrefectPerMin  = 15.0 // at any Job count
	largeJobs            = 10000
	settleBeforeMeasured = 30 * time.Second
)

type result struct {
	jobs                   int
	mem                    benchutil.Mem
	heap                   float64
	kubePerMin, prefPerMin float64
	// prefByOp is the Prefect requests per minute by GraphQL operation.
	prefByOp       map[string]float64
	kubeSinceStart int
}

func run() error {
	jobCounts := flag.String("jobs", "100,10000", "comma-separated Job counts, each measured with its own agent")
	nodes := flag.Int("nodes", 100, "simulated nodes (110 pods each)")
	window := flag.Duration("window", time.Minute, "steady-state measuring window")
	flag.Parse()
	ctx := context.Background()
	began := time.Now()
	var counts []int
	for _, f := range strings.Split(*jobCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-jobs %q: expected counts such as 100,10000", *jobCounts)
		}
		counts = append(counts, n)
	}

	benchutil.Logf("building kubectl-prefect and prefect-agent as released...")
	bins, err := benchutil.Build()
	if err != nil {
		return err
	}
	defer bins.Close()
	benchutil.Logf("starting the test bed cluster with %d nodes...", *nodes)
	cluster, err := testbed.Start(ctx, *nodes)
	if err != nil {
		return err
	}
	defer cluster.Stop()

	var results []result
	for _, n := range counts {
		r, err := measure(ctx, cluster, bins.Agent, n, *window)
		if err != nil {
			return err
		}
		results = append(results, r)
	}

	fmt.Printf("prefect-agent built as released, managing Jobs whose pods keep running; %s after a %s settle, one cluster, one run:\n\n", *window, settleBeforeMeasured)
	fmt.Printf("| Jobs managed | RSS (VmRSS) | peak RSS (VmHWM) | RssAnon | Go heap in use | Prefect requests/min | Kubernetes requests/min | Kubernetes requests since start |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Printf("| %d | %s | %s | %s | %.1f MiB | %.1f | %.1f | %d |\n", r.jobs, benchutil.MiB(r.mem.RSS), benchutil.MiB(r.mem.HWM),
			benchutil.MiB(r.mem.Anon), r.heap, r.prefPerMin, r.kubePerMin, r.kubeSinceStart)
	}
	fmt.Printf("\nPrefect requests/min by operation:\n\n")
	for _, r := range results {
		var ops []string
		for op := range r.prefByOp {
			ops = append(ops, op)
		}
		sort.Strings(ops)
		var parts []string
		for _, op := range ops {
			parts = append(parts, fmt.Sprintf("%s %.1f", op, r.prefByOp[op]))
		}
		fmt.Printf("- %d Jobs: %s\n", r.jobs, strings.Join(parts, ", "))
	}
	fmt.Printf("\n| target | measured | |\n|---|---|---|\n")
	for _, r := range results {
		fmt.Printf("| ≤ %.0f Prefect requests/min with %d Jobs | %.1f | %s |\n", targetPrefectPerMin, r.jobs, r.prefPerMin, mark(r.prefPerMin <= targetPrefectPerMin))
		if r.jobs == largeJobs {
			peak := float64(r.mem.HWM) / 1024
			fmt.Printf("| ≤ %.0f MiB peak RSS with %d Jobs | %.1f MiB | %s |\n", targetPeakMiB, r.jobs, peak, mark(peak <= targetPeakMiB))
		}
	}

	largest := counts[len(counts)-1]
	ns := namespaceFor(largest)
	benchutil.Logf("timing `kubectl prefect jobs` against `kubectl get jobs` on %d Jobs...", largest)
	ours, err := median(5, bins.Plugin, "jobs", "--kubeconfig", cluster.Kubeconfig, "-n", ns)
	if err != nil {
		return err
	}
	kubectl, _ := testbed.Tool("kubectl")
	theirs, err := median(5, kubectl, "get", "jobs", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "-l", manifest.LabelIdentifier)
	if err != nil {
		return err
	}
	fmt.Printf("\n| listing %d Jobs (median of 5) | seconds |\n|---|---|\n", largest)
	fmt.Printf("| kubectl prefect jobs | %.2f |\n", ours.Seconds())
	fmt.Printf("| kubectl get jobs -l prefect.io/identifier | %.2f |\n", theirs.Seconds())
	fmt.Printf("| ratio | %.2f |\n", ours.Seconds()/theirs.Seconds())
	benchutil.Logf("bench/manage took %s", time.Since(began).Round(time.Second))
	return nil
}

func namespaceFor(n int) string { return fmt.Sprintf("bench-manage-%d", n) }

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// measure makes n running Jobs, starts prefect-agent on them and measures it
// at steady state.
func measure(ctx context.Context, cluster *testbed.Cluster, agentBin string, n int, window time.Duration) (result, error) {
	r := result{jobs: n}
	ns := namespaceFor(n)
	if _, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return r, err
	}
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		return r, err
	}
	benchutil.Logf("%d Jobs: creating running flow runs and their Jobs (pods that keep running)...", n)
	began := time.Now()
	// Owned by the agent measured (default name, no labels), as it would have made them.
	settings := manifest.AgentSettings{Namespace: ns, Backend: "server", API: "http://x", Owner: agent.AgentIdentity("agent", nil)}
	if err := benchutil.CreateRunJobs(ctx, cluster, em, settings, n, func(int) emulator.FlowRunSpec { return emulator.FlowRunSpec{State: "Running"} }); err != nil {
		return r, err
	}
	benchutil.Logf("  Jobs created in %s; waiting for their pods to run...", time.Since(began).Round(time.Second))
	if err := benchutil.WaitPodsRunning(ctx, cluster, ns, n); err != nil {
		return r, err
	}
	benchutil.Logf("  all pods running after %s", time.Since(began).Round(time.Second))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	srv := &http.Server{Handler: em.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	metricsAddr, err := benchutil.FreeAddr()
	if err != nil {
		return r, err
	}
	cmd := exec.Command(agentBin, "--kubeconfig", cluster.Kubeconfig, "-n", ns, "--backend", "server",
		"--api", "http://"+ln.Addr().String(), "--agent-address", metricsAddr, "--unschedulable-timeout", "1h", "--profiling")
	cmd.Stderr, _ = os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("bench-manage-agent-%d.log", n)))
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := benchutil.WaitHealthy(metricsAddr, 2*time.Minute); err != nil {
		return r, err
	}
	benchutil.Logf("  agent started; letting it settle for %s, then measuring for %s...", settleBeforeMeasured, window)
	time.Sleep(settleBeforeMeasured)
	kube0, ops0 := kubeRequests(metricsAddr), em.Requests()
	time.Sleep(window)
	kube1, ops1 := kubeRequests(metricsAddr), em.Requests()
	r.prefByOp = map[string]float64{}
	for op, n := range ops1 {
		if d := n - ops0[op]; d > 0 {
			r.prefByOp[op] = float64(d) / window.Minutes()
		}
	}
	r.kubePerMin = float64(kube1-kube0) / window.Minutes()
	r.prefPerMin = float64(total(ops1)-total(ops0)) / window.Minutes()
	r.kubeSinceStart = kube1
	r.mem = benchutil.Memory(cmd.Process.Pid)
	r.heap = benchutil.HeapInuse(metricsAddr)
	if resp, err := http.Get("http://" + metricsAddr + "/debug/pprof/heap"); err == nil {
		f, _ := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("bench-manage-heap-%d.pprof", n)))
		_, _ = io.Copy(f, resp.Body)
		f.Close()
		resp.Body.Close()
	}
	return r, nil
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

// kubeRequests sums the agent's prefect_agent_kube_api_requests_total.
func kubeRequests(addr string) int {
	v, _ := benchutil.Metric(addr, "prefect_agent_kube_api_requests_total")
	return int(v)
}

// total sums the emulator's request counts over the operations.
func total(requests map[string]int) int {
	n := 0
	for _, c := range requests {
		n += c
	}
	return n
}
