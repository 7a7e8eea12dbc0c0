package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// installedAgent is the agent container of the Deployment `agent install`
// renders (--dry-run=client -o json) with the given flags.
func installedAgent(t *testing.T, ns string, flags ...string) corev1.Container {
	t.Helper()
	args := append([]string{"agent", "install", "-n", ns, "--dry-run=client", "-o", "json"}, flags...)
	cmd := exec.Command(filepath.Join(binDir, "kubectl-prefect"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("agent install --dry-run=client: %v", err)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatal(err)
	}
	for _, item := range list.Items {
		var d appsv1.Deployment
		if err := json.Unmarshal(item, &d); err == nil && d.Kind == "Deployment" && len(d.Spec.Template.Spec.Containers) == 1 {
			return d.Spec.Template.Spec.Containers[0]
		}
	}
	t.Fatalf("no Deployment with one container in:\n%s", out)
	return corev1.Container{}
}

// kubeletProber probes one HTTP endpoint of a running process the way the
// kubelet probes a container (pkg/kubelet/prober): the first probe
// initialDelaySeconds after the start, then one every periodSeconds, each
// GET given timeoutSeconds (1 when unset) and counted a success for a
// status from 200 to 399; failureThreshold failures in a row fail the probe
// (for liveness: a restart, counted here, after which the count starts
// over), successThreshold (1 when unset) successes in a row pass it. A
// readiness probe starts failed: not ready until it passes.
type kubeletProber struct {
	mu       sync.Mutex
	probes   int
	failures int // in a row
	restarts int // what the failures would have caused for a liveness probe
	ready    bool
	// readyAt are the times the probe turned passing.
	readyAt []time.Time
}

func startKubeletProber(ctx context.Context, url string, p *corev1.Probe, started time.Time) *kubeletProber {
	k := &kubeletProber{}
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	successes := 0
	client := &http.Client{Timeout: timeout}
	go func() {
		next := started.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(next)):
			}
			next = next.Add(time.Duration(max(p.PeriodSeconds, 1)) * time.Second)
			ok := false
			if resp, err := client.Get(url); err == nil {
				ok = resp.StatusCode >= 200 && resp.StatusCode < 400
				resp.Body.Close()
			}
			k.mu.Lock()
			k.probes++
			if ok {
				k.failures = 0
				successes++
				if !k.ready && successes >= int(max(p.SuccessThreshold, 1)) {
					k.ready = true
					k.readyAt = append(k.readyAt, time.Now())
				}
			} else {
				successes = 0
				k.failures++
				if k.failures >= int(max(p.FailureThreshold, 1)) {
					k.ready = false
					k.restarts++
					k.failures = 0
				}
			}
			k.mu.Unlock()
		}
	}()
	return k
}

// state is the number of probes sent, the restarts a liveness probe would
// have caused, and the times the probe turned passing.
func (k *kubeletProber) state() (probes, restarts int, readyAt []time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.probes, k.restarts, append([]time.Time(nil), k.readyAt...)
}
