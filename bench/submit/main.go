// Command submit measures the agent as released, side by side in one run on
// the test bed's real control plane: the binaries' sizes, the idle agent's
// memory (prefect-agent, the image's binary, and `kubectl prefect agent
// start`), and a burst of due flow runs turned into Jobs by prefect-agent next
// to the raw ceiling (the same number of Jobs created directly with client-go),
// at the agent's default client limits and unthrottled. `make bench` runs it.
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
	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
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
	targetAgentMB    = 40.0
	targetPluginMB   = 60.0
	targetIdleMiB    = 25.0
	targetBurstMiB   = 30.0
	targetBurstSecs  = 8.0
	pythonRunsPerSec = 53
	pythonPeakMB     = 82
)

func run() error {
	runs := flag.Int("runs", 1000, "flow runs to schedule")
	workers := flag.Int("workers", 32, "parallel creates for the raw ceiling (the agent's default --concurrency)")
	qps := flag.Float64("qps", 100, "Kubernetes client QPS for both (the agent's default --kube-api-qps)")
	burst := flag.Int("burst", 200, "Kubernetes client burst for both (the agent's default --kube-api-burst)")
	settle := flag.Duration("idle", 10*time.Second, "how long the idle agents run before their memory is read")
	flag.Parse()
	ctx := context.Background()
	began := time.Now()

	logf("building kubectl-prefect and prefect-agent as released (CGO_ENABLED=0 -trimpath -ldflags \"-s -w\")...")
	bins, err := benchutil.Build()
	if err != nil {
		return err
	}
	defer bins.Close()
	logf("starting the test bed cluster...")
	cluster, err := testbed.Start(ctx, 2)
	if err != nil {
		return err
	}
	defer cluster.Stop()

	type idleResult struct {
		name string
		mem  benchutil.Mem
		heap float64
	}
	var idles []idleResult
	for i, b := range []struct {
		name, bin string
		plugin    bool
	}{{"prefect-agent", bins.Agent, false}, {"kubectl prefect agent start", bins.Plugin, true}} {
		logf("idle: %s for %s...", b.name, *settle)
		mem, heap, err := idle(ctx, cluster, b.bin, b.plugin, fmt.Sprintf("bench-idle-%d", i), *settle)
		if err != nil {
			return err
		}
		idles = append(idles, idleResult{b.name, mem, heap})
	}

	type burstRow struct {
		name            string
		agent, raw      time.Duration
		mem             benchutil.Mem
		heap            float64
		defaultLimits   bool
		prefectRequests int
	}
	var bursts []burstRow
	for i, limits := range []struct {
		name  string
		qps   float64
		burst int
	}{{fmt.Sprintf("agent defaults (QPS %g, burst %d)", *qps, *burst), *qps, *burst}, {"unthrottled (QPS 5000, burst 10000)", 5000, 10000}} {
		logf("raw: %d Jobs with client-go, %s...", *runs, limits.name)
		raw, err := rawCeiling(ctx, cluster, fmt.Sprintf("bench-raw-%d", i), *runs, *workers, float32(limits.qps), limits.burst)
		if err != nil {
			return err
		}
		logf("prefect-agent: %d due flow runs, %s...", *runs, limits.name)
		r, err := agentBurst(ctx, cluster, bins.Agent, fmt.Sprintf("bench-agent-%d", i), *runs, limits.qps, limits.burst)
		if err != nil {
			return err
		}
		bursts = append(bursts, burstRow{limits.name, r.elapsed, raw, r.mem, r.heap, i == 0, r.prefectRequests})
	}

	agentMB, pluginMB := benchutil.Size(bins.Agent), benchutil.Size(bins.Plugin)
	fmt.Printf("Built as released (CGO_ENABLED=0 -trimpath -ldflags \"-s -w\"), one cluster, one run, %d due flow runs:\n\n", *runs)
	fmt.Printf("| measure | this build | target |\n|---|---|---|\n")
	fmt.Printf("| prefect-agent binary (the image's) | %.1f MB | ≤ %.0f MB %s |\n", agentMB, targetAgentMB, mark(agentMB <= targetAgentMB))
	fmt.Printf("| kubectl-prefect binary (the plugin) | %.1f MB | ≤ %.0f MB %s |\n", pluginMB, targetPluginMB, mark(pluginMB <= targetPluginMB))
	idleMiB := float64(idles[0].mem.RSS) / 1024
	fmt.Printf("| prefect-agent idle RSS | %.1f MiB | ≤ %.0f MiB %s |\n", idleMiB, targetIdleMiB, mark(idleMiB <= targetIdleMiB))
	for _, b := range bursts {
		if !b.defaultLimits {
			continue
		}
		peak := float64(b.mem.HWM) / 1024
		fmt.Printf("| prefect-agent peak RSS (VmHWM), %d-run burst | %.1f MiB | ≤ %.0f MiB %s |\n", *runs, peak, targetBurstMiB, mark(peak <= targetBurstMiB))
		fmt.Printf("| %d runs at default client limits | %.2f s (%.0f runs/s) | about %.0f s or less %s |\n", *runs, b.agent.Seconds(),
			float64(*runs)/b.agent.Seconds(), targetBurstSecs, mark(b.agent.Seconds() <= targetBurstSecs*1.1))
	}
	fmt.Printf("| Python 1.4.1 agent, 1000 runs (quoted from issue 12's measurement) | %d runs/s, %d MB peak RSS | |\n", pythonRunsPerSec, pythonPeakMB)

	fmt.Printf("\nIdle (registered, polling an empty queue, informers synced; read after %s):\n\n", *settle)
	fmt.Printf("| binary | VmRSS | RssAnon | RssFile (mapped binary) | VmHWM | Go heap in use |\n|---|---|---|---|---|---|\n")
	for _, r := range idles {
		fmt.Printf("| %s | %s | %s | %s | %s | %.1f MiB |\n", r.name, benchutil.MiB(r.mem.RSS), benchutil.MiB(r.mem.Anon), benchutil.MiB(r.mem.File), benchutil.MiB(r.mem.HWM), r.heap)
	}

	fmt.Printf("\nBurst: %d due flow runs, timed from prefect-agent's start until every run is Submitted with its Job created; the raw ceiling creates the same Jobs with client-go and %d workers:\n\n", *runs, *workers)
	fmt.Printf("| Kubernetes client limits | prefect-agent | agent runs/s | raw client-go | raw jobs/s | agent / raw | peak RSS (VmHWM) | peak RssAnon | peak Go heap in use | Prefect requests |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, b := range bursts {
		fmt.Printf("| %s | %.2f s | %.0f | %.2f s | %.0f | %.2f | %s | %s | %.1f MiB | %d |\n", b.name,
			b.agent.Seconds(), float64(*runs)/b.agent.Seconds(), b.raw.Seconds(), float64(*runs)/b.raw.Seconds(),
			b.raw.Seconds()/b.agent.Seconds(), benchutil.MiB(b.mem.HWM), benchutil.MiB(b.mem.Anon), b.heap, b.prefectRequests)
	}
	logf("bench/submit took %s", time.Since(began).Round(time.Second))
	return nil
}

func mark(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(**missed**)"
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func namespace(ctx context.Context, c *testbed.Cluster, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// serve runs the emulator on a loopback port until the returned stop.
func serve(em *emulator.Emulator) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: em.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// startAgent starts a binary as the agent; the plugin needs `agent start`.
func startAgent(bin string, plugin bool, c *testbed.Cluster, ns, api, metricsAddr string, extra ...string) (*exec.Cmd, error) {
	args := []string{"--kubeconfig", c.Kubeconfig, "-n", ns, "--backend", "server", "--api", api, "--agent-address", metricsAddr}
	if plugin {
		args = append([]string{"agent", "start"}, args...)
	}
	cmd := exec.Command(bin, append(args, extra...)...)
	logFile, err := os.Create(filepath.Join(os.TempDir(), "bench-submit-"+ns+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func stop(cmd *exec.Cmd) { _ = cmd.Process.Kill(); _ = cmd.Wait() }

// idle runs an agent with nothing to do and reads its memory after settle.
func idle(ctx context.Context, c *testbed.Cluster, bin string, plugin bool, ns string, settle time.Duration) (benchutil.Mem, float64, error) {
	if err := namespace(ctx, c, ns); err != nil {
		return benchutil.Mem{}, 0, err
	}
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		return benchutil.Mem{}, 0, err
	}
	api, stopAPI, err := serve(em)
	if err != nil {
		return benchutil.Mem{}, 0, err
	}
	defer stopAPI()
	metricsAddr, err := benchutil.FreeAddr()
	if err != nil {
		return benchutil.Mem{}, 0, err
	}
	cmd, err := startAgent(bin, plugin, c, ns, api, metricsAddr)
	if err != nil {
		return benchutil.Mem{}, 0, err
	}
	defer stop(cmd)
	if err := benchutil.WaitHealthy(metricsAddr, time.Minute); err != nil {
		return benchutil.Mem{}, 0, err
	}
	time.Sleep(settle)
	return benchutil.Memory(cmd.Process.Pid), benchutil.HeapInuse(metricsAddr), nil
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

type burstResult struct {
	elapsed         time.Duration
	mem             benchutil.Mem // the peak of each field while it ran
	heap            float64       // peak Go heap in use, MiB
	prefectRequests int
}

// runningRunConfig gives the burst's runs pods that keep running.
var runningRunConfig = []byte(`{"type":"KubernetesRun","image":"` + testbed.ImageRun + `","cpu_request":"1m","memory_request":"1Mi"}`)

// agentBurst schedules n due runs and times prefect-agent from its start
// until every run is Submitted with its Job created.
func agentBurst(ctx context.Context, c *testbed.Cluster, bin, ns string, n int, qps float64, burst int) (burstResult, error) {
	var r burstResult
	if err := namespace(ctx, c, ns); err != nil {
		return r, err
	}
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		return r, err
	}
	for i := 0; i < n; i++ {
		// Pods that keep running, as the raw loop's: a Job that finished
		// would be reported and deleted before the count.
		if _, err := em.AddFlowRun(emulator.FlowRunSpec{ScheduledStartTime: time.Now().Add(-time.Minute), RunConfig: runningRunConfig}); err != nil {
			return r, err
		}
	}
	api, stopAPI, err := serve(em)
	if err != nil {
		return r, err
	}
	defer stopAPI()
	metricsAddr, err := benchutil.FreeAddr()
	if err != nil {
		return r, err
	}
	start := time.Now()
	cmd, err := startAgent(bin, false, c, ns, api, metricsAddr, "--kube-api-qps", fmt.Sprint(qps), "--kube-api-burst", strconv.Itoa(burst))
	if err != nil {
		return r, err
	}
	defer stop(cmd)
	lastScrape := time.Time{}
	for {
		r.mem.Max(benchutil.Memory(cmd.Process.Pid))
		if time.Since(lastScrape) > 250*time.Millisecond {
			r.heap = max(r.heap, benchutil.HeapInuse(metricsAddr))
			lastScrape = time.Now()
		}
		done := 0
		for _, run := range em.FlowRuns() {
			if run.State == "Submitted" && len(run.Logs) > 0 {
				done++
			}
		}
		if done == n {
			r.elapsed = time.Since(start)
			list, err := c.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return r, err
			}
			if len(list.Items) != n {
				return r, fmt.Errorf("%d Jobs for %d runs", len(list.Items), n)
			}
			r.mem.Max(benchutil.Memory(cmd.Process.Pid))
			r.heap = max(r.heap, benchutil.HeapInuse(metricsAddr))
			for _, v := range em.Requests() {
				r.prefectRequests += v
			}
			return r, nil
		}
		if time.Since(start) > 10*time.Minute {
			return r, fmt.Errorf("only %d of %d runs submitted after 10 minutes", done, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
