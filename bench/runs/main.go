// Command runs times `kubectl prefect runs`, built as released, over many
// Jobs with running pods (10,000 by default) against `kubectl get jobs` on
// the same Jobs in the same run, on the test bed's real control plane, and
// counts the Prefect requests each listing makes. It is a benchmark, not a
// test: it takes several minutes of both cores.
//
//	go run ./bench/runs -jobs 10000
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/bench/benchutil"
	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// targetRatio is the target: runs within 1.5x of kubectl get jobs.
const targetRatio = 1.5

// benchAgent is the name of the agent whose runs are listed.
const benchAgent = "bench-agent"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("jobs", 10000, "Jobs (each with a running pod and a Running flow run)")
	nodes := flag.Int("nodes", 100, "simulated nodes (110 pods each)")
	repeats := flag.Int("repeats", 5, "timed listings of each command (the median is reported)")
	flag.Parse()
	ctx := context.Background()
	began := time.Now()
	benchutil.Logf("building kubectl-prefect as released...")
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
	ns := "bench-runs"
	if _, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: em.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	api := "http://" + ln.Addr().String()

	// The runs are the agent's, as in a steady state: each Job carries its
	// identity, each run was marked Submitted by it in this namespace, then
	// went Running; so `runs` finds them through the agent's registration.
	client := prefect.NewClient(prefect.Config{API: api})
	agentID, err := client.RegisterAgent(ctx, em.DefaultTenant().ID, benchAgent, "KubernetesAgent", nil)
	if err != nil {
		return err
	}
	client.SetAgentID(agentID)
	benchutil.Logf("creating %d Running flow runs of the agent and their Jobs...", *n)
	settings := manifest.AgentSettings{Namespace: ns, Backend: "server", API: "http://x", Owner: agent.AgentIdentity(benchAgent, nil)}
	if err := benchutil.CreateRunJobs(ctx, cluster, em, settings, *n, func(i int) emulator.FlowRunSpec {
		return emulator.FlowRunSpec{Name: fmt.Sprintf("run-%05d", i), Flow: emulator.Flow{Name: "bench"}}
	}); err != nil {
		return err
	}
	if err := markRunning(ctx, em, client, ns); err != nil {
		return err
	}
	if err := benchutil.WaitPodsRunning(ctx, cluster, ns, *n); err != nil {
		return err
	}
	kubectl, err := testbed.Tool("kubectl")
	if err != nil {
		return err
	}
	before := em.Requests()
	benchutil.Logf("timing `kubectl prefect runs` and `kubectl get jobs`, %d times each, alternating...", *repeats)
	var ours, theirs []time.Duration
	for i := 0; i < *repeats; i++ {
		d, err := timed(*n, bins.Plugin, "runs", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "--api", api, "--backend", "server", "--agent-name", benchAgent)
		if err != nil {
			return err
		}
		ours = append(ours, d)
		if d, err = timed(*n, kubectl, "get", "jobs", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "-l", manifest.LabelIdentifier); err != nil {
			return err
		}
		theirs = append(theirs, d)
	}
	after := em.Requests()
	perListing := map[string]float64{}
	total := 0.0
	for op, c := range after {
		if d := c - before[op]; d > 0 {
			perListing[op] = float64(d) / float64(*repeats)
			total += perListing[op]
		}
	}
	o, t := median(ours), median(theirs)
	fmt.Printf("`kubectl prefect runs` built as released (-trimpath -ldflags \"-s -w\") over %d Jobs with running pods, against `kubectl get jobs` in the same run (median of %d, alternating):\n\n", *n, *repeats)
	fmt.Printf("| listing %d Jobs | seconds |\n|---|---|\n", *n)
	fmt.Printf("| kubectl prefect runs | %.2f |\n| kubectl get jobs -l prefect.io/identifier | %.2f |\n| ratio (target ≤ %.1f) | %.2f %s |\n\n", o.Seconds(), t.Seconds(), targetRatio, o.Seconds()/t.Seconds(), mark(o.Seconds()/t.Seconds() <= targetRatio))
	fmt.Printf("| Prefect requests per `runs` listing | count |\n|---|---|\n")
	ops := make([]string, 0, len(perListing))
	for op := range perListing {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		fmt.Printf("| %s | %.0f |\n", op, perListing[op])
	}
	fmt.Printf("| total | %.0f |\n", total)
	benchutil.Logf("bench/runs took %s", time.Since(began).Round(time.Second))
	return nil
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// timed runs a listing and checks that it listed rows rows under its
// header: a listing that missed the Jobs would time nothing.
func timed(rows int, name string, args ...string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.Command(name, args...).Output()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s %v: %v", name, args, err)
	}
	if got := strings.Count(string(out), "\n") - 1; got != rows {
		return 0, fmt.Errorf("%s %v listed %d rows, want %d", name, args, got, rows)
	}
	return took, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// markRunning takes every flow run through the agent's Submitted mark (for
// this namespace) to Running, 32 at a time.
func markRunning(ctx context.Context, em *emulator.Emulator, client *prefect.Client, ns string) error {
	runs := em.FlowRuns()
	work := make(chan emulator.FlowRun)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				by := prefect.Submission{Agent: benchAgent, Namespace: ns, Token: r.ID}
				err := client.SetFlowRunState(ctx, r.ID, nil, prefect.SubmittedState("Submitted for execution", r.SerializedState, by))
				if err == nil {
					_, err = em.SetFlowRunState(r.ID, "Running", "the bench's flow is running")
				}
				if err != nil {
					errs <- fmt.Errorf("flow run %s: %w", r.ID, err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, r := range runs {
		select {
		case err = <-errs:
			break feed
		case work <- r:
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}
