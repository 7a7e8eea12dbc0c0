package e2e

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// TestPlainKeyIsSaidOnceAtStart: an agent started with a key and no Secret
// gives the Job the plain value, as 1.4.1 did, and says once at start how to
// avoid it; with --key-secret-name the Job reads the Secret and nothing is said.
func TestPlainKeyIsSaidOnceAtStart(t *testing.T) {
	const key = "pcu_e2e_PLAIN_0815"
	const advice = "Flow run Jobs carry the API key as a plain value in their spec"
	for _, tc := range []struct {
		name   string
		args   []string
		plain  bool
		advice int
	}{
		{"plain", nil, true, 1},
		{"secret", []string{"--key-secret-name", "prefect-api-key"}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := cluster.Namespace(t)
			em, srv := startEmulator(t)
			run, _ := em.AddFlowRun(emulator.FlowRunSpec{Labels: []string{"e2e"}})
			p := startAgentProcess(t, prefectAgent(ns, append([]string{"--api", srv.URL, "-k", key}, tc.args...)...))
			p.waitForJob(t, "prefect-agent", ns, run.ID)
			p.stopWithSIGTERM(t, "prefect-agent")
			jobs, err := cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + run.ID})
			if err != nil || len(jobs.Items) != 1 {
				t.Fatalf("Jobs %v, %v", jobs, err)
			}
			plain, fromSecret := false, false
			for _, e := range jobs.Items[0].Spec.Template.Spec.Containers[0].Env {
				plain = plain || e.Value == key
				fromSecret = fromSecret || (e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "prefect-api-key")
			}
			if plain != tc.plain || fromSecret == tc.plain {
				t.Fatalf("the Job carries the key: plain %v, from the Secret %v", plain, fromSecret)
			}
			log := p.stderr.String()
			if n := strings.Count(log, advice); n != tc.advice {
				t.Fatalf("the advice appears %d times, want %d:\n%s", n, tc.advice, tail(log, 20))
			}
			if strings.Contains(log, key) {
				t.Fatal("the agent logged the key")
			}
		})
	}
}
