package testbed

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

//go:embed stages.yaml
var stages []byte

// Cluster is a running test control plane.
type Cluster struct {
	// Name is the kwok cluster name.
	Name string
	// Kubeconfig is the path of an admin kubeconfig for the cluster.
	Kubeconfig string
	// Config is the admin REST config, with client-side rate limits lifted.
	Config *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface

	tools   map[string]string
	workdir string

	// The pod executor (executor.go), started by the first test that needs it.
	execOnce sync.Once
	exec     *executor
	execErr  error
}

// clustersRoot holds every test bed cluster's files, one folder each.
func clustersRoot() string { return filepath.Join(RepoRoot(), ".cache", "kwok") }

// Start brings up a cluster with the given number of simulated nodes. It takes
// a few seconds once the binaries are built. Clusters that other test binaries
// start at the same moment can be handed the same free port; a start that
// fails is torn down and tried again under a new name, three times at most.
func Start(ctx context.Context, nodes int) (*Cluster, error) {
	tools, err := checkTools()
	if err != nil {
		return nil, err
	}
	reapStale()
	const attempts = 3
	for attempt := 1; ; attempt++ {
		c, err := startOnce(ctx, tools, nodes)
		if err == nil || attempt == attempts || ctx.Err() != nil {
			return c, err
		}
		fmt.Fprintf(os.Stderr, "test bed: starting a cluster failed (%v); trying again\n", err)
	}
}

// startOnce creates, connects and waits for one cluster.
func startOnce(ctx context.Context, tools map[string]string, nodes int) (*Cluster, error) {
	name := fmt.Sprintf("tb-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	c := &Cluster{Name: name, tools: tools, workdir: clustersRoot()}
	if err := os.MkdirAll(c.dir(), 0o755); err != nil {
		return nil, err
	}
	stagesPath := filepath.Join(c.dir(), "stages.yaml")
	if err := os.WriteFile(stagesPath, stages, 0o644); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(c.dir(), "admin.kubeconfig")
	_, err := c.kwokctl(ctx, "create", "cluster",
		"--runtime", "binary",
		"--etcd-binary", tools["etcd"],
		"--kube-apiserver-binary", tools["kube-apiserver"],
		"--kube-controller-manager-binary", tools["kube-controller-manager"],
		"--kube-scheduler-binary", tools["kube-scheduler"],
		"--kwok-controller-binary", tools["kwok"],
		"--kubeconfig", c.Kubeconfig,
		"--config", stagesPath,
		"--disable-qps-limits",
		// Logs objects tell kwok which file holds a container's log, so
		// `kubectl logs` serves what the pod executor's processes wrote.
		"--enable-crds", "Logs",
		// One instance each: without leader election they cannot lose a
		// lease (and exit) while a test keeps the kube-apiserver down.
		"--extra-args", "kube-controller-manager=leader-elect=false",
		"--extra-args", "kube-scheduler=leader-elect=false",
		"--wait", "2m",
	)
	if err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.connect(); err != nil {
		c.Stop()
		return nil, err
	}
	if _, err := c.kwokctl(ctx, "scale", "node", "--replicas", strconv.Itoa(nodes)); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.waitReady(ctx, nodes); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) dir() string { return filepath.Join(c.workdir, c.Name) }

func (c *Cluster) connect() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("reading the test cluster's kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c.Config = cfg
	c.Client, err = kubernetes.NewForConfig(cfg)
	return err
}

// waitReady waits for the nodes to be Ready and the default service account,
// which Pods and Jobs need, to exist.
func (c *Cluster) waitReady(ctx context.Context, nodes int) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range list.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready < nodes {
			return false, nil
		}
		_, err = c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, nil
	})
}

// Stop tears the cluster down and removes its files.
func (c *Cluster) Stop() {
	c.stopExecutor()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = c.kwokctl(ctx, "delete", "cluster")
	_ = os.RemoveAll(c.dir())
}

// Kubectl runs the built kubectl against the cluster.
func (c *Cluster) Kubectl(ctx context.Context, stdin []byte, args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.CommandContext(ctx, c.tools["kubectl"], append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

func (c *Cluster) kwokctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.tools["kwokctl"], append([]string{"--name", c.Name}, args...)...)
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+c.dir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kwokctl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// reapStale deletes clusters left by test processes that no longer run (an
// interrupted or killed test run), so their control planes do not pile up.
func reapStale() {
	entries, err := os.ReadDir(clustersRoot())
	if err != nil {
		return
	}
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "tb-%d-", &pid); err != nil || alive(pid) {
			continue
		}
		stale := &Cluster{Name: e.Name(), workdir: clustersRoot(), tools: map[string]string{}}
		if p, err := Tool("kwokctl"); err == nil {
			stale.tools["kwokctl"] = p
		}
		stale.Stop()
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
