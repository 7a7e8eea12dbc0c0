// Command demo shows kubectl-prefect end to end on a throwaway cluster: a
// real control plane with simulated nodes, the Prefect API emulator, and
// `kubectl prefect agent start` run by kubectl as a plugin. `make demo` runs it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin := filepath.Join(testbed.RepoRoot(), "bin")

	step("Starting a throwaway cluster: etcd, kube-apiserver, controller-manager, scheduler, 2 kwok nodes")
	start := time.Now()
	cluster, err := testbed.Start(ctx, 2)
	if err != nil {
		return err
	}
	defer func() {
		step("Tearing the cluster down")
		cluster.Stop()
	}()
	fmt.Printf("    up in %s, kubeconfig %s\n", time.Since(start).Round(100*time.Millisecond), cluster.Kubeconfig)
	if _, errOut, err := cluster.Kubectl(ctx, nil, "create", "namespace", "flows"); err != nil {
		return fmt.Errorf("creating namespace flows: %v: %s", err, errOut)
	}

	step("Starting the Prefect API emulator and scheduling five flow runs")
	em, err := emulator.New(emulator.Config{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go (&http.Server{Handler: em.Handler(), ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	api := "http://" + ln.Addr().String()
	fmt.Printf("    Prefect API at %s\n", api)
	if err := cluster.StartExecutor(); err != nil {
		return err
	}
	names := map[string]string{}
	for _, r := range demoRuns() {
		added, err := addRun(em, r)
		if err != nil {
			return err
		}
		names[added.ID] = r.name
		fmt.Printf("    %-14s %s\n", r.name, r.about)
	}

	templatePath := filepath.Join(os.TempDir(), fmt.Sprintf("demo-job-template-%d.yaml", os.Getpid()))
	if err := os.WriteFile(templatePath, []byte(jobTemplate), 0o644); err != nil {
		return err
	}
	defer os.Remove(templatePath)
	step("kubectl prefect agent start -n flows --backend server --api %s -l k8s --delete-finished-jobs=false --image-pull-grace 10s --job-template %s", api, templatePath)
	kubectl, _ := testbed.Tool("kubectl")
	agent := exec.Command(kubectl, "prefect", "agent", "start", "-n", "flows", "--backend", "server", "--api", api, "-l", "k8s",
		"--agent-name", "demo-agent", "--delete-finished-jobs=false", "--image-pull-grace", "10s", "--job-template", templatePath)
	agent.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "KUBECONFIG="+cluster.Kubeconfig)
	logs, _ := agent.StderrPipe()
	if err := agent.Start(); err != nil {
		return err
	}
	go prefixLines(logs, "    agent | ")

	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if settled(em) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	step("kubectl prefect jobs -n flows -o wide")
	list := exec.Command(kubectl, "prefect", "jobs", "-n", "flows", "-o", "wide")
	list.Env = agent.Env
	out, _ := list.CombinedOutput()
	fmt.Print(indent(string(out)))

	step("The flow runs in Prefect")
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "    RUN\tSTATE\tRUN LOG (agent)")
	for _, r := range em.FlowRuns() {
		var lines []string
		for _, l := range r.Logs {
			if l.Name == "demo-agent" {
				lines = append(lines, l.Level+": "+l.Message)
			}
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\n", names[r.ID], r.State, strings.Join(lines, " | "))
	}
	tw.Flush()

	step("The real flow runs: Prefect 1.4.1's runner in each Job's pod (the test bed's pod executor runs the container)")
	for _, r := range em.FlowRuns() {
		if _, ok := realRuns[names[r.ID]]; ok {
			showRealRun(cluster, em, names[r.ID], r.ID)
		}
	}

	step("Stopping the agent (SIGTERM)")
	_ = agent.Process.Signal(syscall.SIGTERM)
	if err := agent.Wait(); err != nil {
		return fmt.Errorf("agent exited with %v", err)
	}
	fmt.Println("    agent exited 0")
	return nil
}

type demoRun struct {
	name, about string
	spec        emulator.FlowRunSpec
}

func rc(v map[string]any) json.RawMessage {
	raw, _ := json.Marshal(v)
	return raw
}

func demoRuns() []demoRun {
	due := time.Now().Add(-time.Minute)
	return []demoRun{
		{"hello", "a real flow of three tasks (KubernetesRun with env and resources), run by Prefect 1.4.1's own runner", emulator.FlowRunSpec{}},
		{"etl", "a real flow whose task raises (UniversalRun, the agent's job template)", emulator.FlowRunSpec{}},
		{"legacy", "DockerRun: not for a Kubernetes agent", emulator.FlowRunSpec{Labels: []string{"k8s"}, ScheduledStartTime: due, Flow: emulator.Flow{Name: "legacy"},
			RunConfig: rc(map[string]any{"type": "DockerRun", "image": "example/legacy:1"})}},
		{"typo-image", "an image that cannot be pulled", emulator.FlowRunSpec{Labels: []string{"k8s"}, ScheduledStartTime: due, Flow: emulator.Flow{Name: "typo-image"},
			RunConfig: rc(map[string]any{"type": "KubernetesRun", "image": testbed.ImageImagePull})}},
		{"gpu-only", "labelled gpu: this agent (k8s) leaves it alone", emulator.FlowRunSpec{Labels: []string{"gpu"}, ScheduledStartTime: due, Flow: emulator.Flow{Name: "gpu-only"}}},
	}
}

// realRuns registers the test flows the demo runs for real and says, by
// demo name, which flow module and run config each one has.
var realRuns = map[string]struct {
	module    string
	runConfig map[string]any
}{
	"hello": {"testflows.three_tasks", map[string]any{"type": "KubernetesRun", "image": testbed.ImagePrefect,
		"env": map[string]string{"GREETING": "hi"}, "cpu_request": "100m", "memory_limit": "512Mi", "labels": []string{"k8s"}}},
	"etl": {"testflows.raises", map[string]any{"type": "UniversalRun", "labels": []string{"k8s"}}},
}

// addRun schedules one demo run: a run of a registered test flow for the
// real ones, else the spec as it is.
func addRun(em *emulator.Emulator, r demoRun) (emulator.FlowRun, error) {
	real, ok := realRuns[r.name]
	if !ok {
		return em.AddFlowRun(r.spec)
	}
	serialized, err := testbed.SerializedFlow(real.module)
	if err != nil {
		return emulator.FlowRun{}, err
	}
	f, err := em.RegisterFlow(serialized, "")
	if err != nil {
		return emulator.FlowRun{}, err
	}
	return em.CreateFlowRun(emulator.RunOfFlow{FlowID: f.ID, Name: r.name, RunConfig: rc(real.runConfig), ScheduledStartTime: time.Now().Add(-time.Minute)})
}

// jobTemplate is the agent's --job-template: the flow container on the image
// the test bed's pod executor runs, for runs whose run config names none.
const jobTemplate = `apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      containers:
      - name: flow
        image: ` + testbed.ImagePrefect + `
`

// showRealRun prints a real run's states, task runs, the lines its runner
// wrote to the run's log, and the end of its container's output.
func showRealRun(cluster *testbed.Cluster, em *emulator.Emulator, name, id string) {
	r, _ := em.FlowRun(id)
	var states []string
	for _, s := range r.States {
		states = append(states, s.Type)
	}
	fmt.Printf("    %s (flow %q): %s\n", name, r.Flow.Name, strings.Join(states, " > "))
	for _, tr := range r.TaskRuns {
		d, _ := em.TaskRunDetails(tr.ID)
		fmt.Printf("      task run %-14s %s\n", d.TaskSlug, tr.State)
	}
	fmt.Println("      run log:")
	for _, l := range r.Logs {
		fmt.Printf("        %-7s %-24s %s\n", l.Level, l.Name, firstLine(l.Message))
	}
	pods, err := cluster.Client.CoreV1().Pods("flows").List(context.Background(), metav1.ListOptions{LabelSelector: "prefect.io/flow_run_id=" + id})
	if err != nil || len(pods.Items) == 0 {
		return
	}
	out, err := cluster.PodLog("flows", pods.Items[0].Name)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	fmt.Printf("      container output of pod %s (last lines):\n", pods.Items[0].Name)
	for _, l := range lines {
		fmt.Println("        " + l)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// settled reports whether every k8s run has failed or had its Job finish; an
// image that cannot be pulled gets a WARNING at once and fails after its grace.
func settled(em *emulator.Emulator) bool {
	for _, r := range em.FlowRuns() {
		if len(r.Labels) == 1 && r.Labels[0] == "gpu" {
			continue
		}
		finished := r.State == "Failed" || r.State == "Success"
		for _, l := range r.Logs {
			finished = finished || (l.Level == prefect.LevelWarning && strings.Contains(l.Message, "completed"))
		}
		if !finished {
			return false
		}
	}
	return true
}

func prefixLines(r io.Reader, prefix string) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		fmt.Println(prefix + s.Text())
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
