package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/kubectl-prefect/kubectl-prefect/internal/prefect/emulator"
	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

var cluster *testbed.Cluster

func TestMain(m *testing.M) { os.Exit(testbed.Run(m, &cluster)) }

// fastIntervals keep tests quick while exercising the back-off.
var fastIntervals = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}

// env is one test's Prefect emulator and namespace.
type env struct {
	t   *testing.T
	em  *emulator.Emulator
	ns  string
	api string
}

func newEnv(t *testing.T, cfg emulator.Config) *env {
	t.Helper()
	em, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(em.Close)
	srv := httptest.NewServer(em.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, em: em, ns: cluster.Namespace(t), api: srv.URL}
}

// runningAgent is an agent started by a test.
type runningAgent struct {
	agent *Agent
	stop  context.CancelFunc
	done  chan error
	logs  *testbed.SyncBuffer
}

// start runs an agent against the env; mutate adjusts its configuration.
func (e *env) start(apiKey string, mutate func(*Config)) *runningAgent {
	e.t.Helper()
	cfg := Config{
		Prefect:   newClient(e.api, apiKey),
		Kube:      cluster.Client,
		Backend:   "server",
		Name:      "test-agent",
		Job:       manifest.AgentSettings{Namespace: e.ns, Backend: "server", API: e.api, APIKey: apiKey, LogToCloud: true},
		Intervals: fastIntervals,
		// The claim's delays, short: the emulator answers at once.
		ClaimSettle: 20 * time.Millisecond, ClaimRecheck: 300 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	logs := &testbed.SyncBuffer{}
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(logs), textlogger.Verbosity(4)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	ra := &runningAgent{agent: a, stop: cancel, done: make(chan error, 1), logs: logs}
	go func() { ra.done <- a.Run(ctx) }()
	e.t.Cleanup(func() { ra.halt(e.t) })
	return ra
}

// halt stops the agent and waits for it to return.
func (ra *runningAgent) halt(t *testing.T) {
	ra.stop()
	select {
	case err := <-ra.done:
		if err != nil {
			t.Errorf("agent returned an error: %v", err)
		}
		ra.done <- nil
	case <-time.After(time.Minute):
		t.Errorf("agent did not stop within a minute")
	}
}

func (e *env) schedule(spec emulator.FlowRunSpec) emulator.FlowRun {
	e.t.Helper()
	run, err := e.em.AddFlowRun(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return run
}

// eventually is the test bed's Eventually.
var eventually = testbed.Eventually

// waitState waits for a run to reach a state and returns it.
func (e *env) waitState(id, state string) emulator.FlowRun {
	e.t.Helper()
	var run emulator.FlowRun
	eventually(e.t, "flow run "+id+" to be "+state, func() bool {
		run, _ = e.em.FlowRun(id)
		return run.State == state
	})
	return run
}

// waitRequests waits until the emulator has received n more requests of the
// GraphQL operation op than when it was called: a test that rules something
// out waits this way for the agent to have had its chances. op is an
// operation name of pkg/prefect's .graphql files: "DueFlowRuns" is a poll on
// Server ("GetRunsInQueue" on Cloud), "StrandedFlowRunCandidates" a recovery
// pass, "EndedRunsSince" a check for cancelled or finished runs (sent only while the agent
// has an unfinished Job). The emulator counts a request when it arrives
// (refused and failed ones are not counted), and each of those loops sends
// its next request only once it has acted on the answer to the previous one:
// when the count has grown by n, the agent has acted on at least n-1 answers
// to requests sent after the call (work it handed to goroutines may still
// be going on). happened, when not nil, ends the wait early: it tells that
// what the test rules out has happened (a loop can stop asking once it did),
// and the test's assertion then says so.
func (e *env) waitRequests(op string, n int, happened func() bool) {
	e.t.Helper()
	from := e.em.Requests()[op]
	eventually(e.t, fmt.Sprintf("%d more %s requests (%d so far)", n, op, from), func() bool {
		return e.em.Requests()[op] >= from+n || happened != nil && happened()
	})
}

// jobsFor lists the Jobs in the env's namespace made for a flow run.
func (e *env) jobsFor(runID string) []batchv1.Job {
	e.t.Helper()
	list, err := cluster.Client.BatchV1().Jobs(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + runID})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// logsAt returns a run's log lines of one level.
func logsAt(run emulator.FlowRun, level string) []string {
	var out []string
	for _, l := range run.Logs {
		if l.Level == level {
			out = append(out, l.Message)
		}
	}
	return out
}

func runConfig(t *testing.T, v any) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func envValue(job batchv1.Job, name string) (string, bool) {
	for _, v := range job.Spec.Template.Spec.Containers[0].Env {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func newClient(api, key string) *prefect.Client {
	return prefect.NewClient(prefect.Config{API: api, APIKey: key, Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
}

// waitSubmitted waits for a run to be Submitted and to carry the INFO line
// naming its Job, which the agent writes once the Job exists.
func (e *env) waitSubmitted(id string) emulator.FlowRun {
	e.t.Helper()
	var run emulator.FlowRun
	eventually(e.t, "flow run "+id+" to be submitted with its Job", func() bool {
		run, _ = e.em.FlowRun(id)
		return run.State == "Submitted" && contains(logsAt(run, "INFO"), "Submitted for execution: Job ")
	})
	return run
}

// counterSum sums the agent's counter name over the series whose label
// (when label is not empty) has the value value; -1 when the agent has no
// such series.
func counterSum(t *testing.T, ra *runningAgent, name, label, value string) float64 {
	t.Helper()
	families, err := ra.agent.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n, found := 0.0, false
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			matches := label == ""
			for _, l := range m.GetLabel() {
				matches = matches || (l.GetName() == label && l.GetValue() == value)
			}
			if matches {
				n, found = n+m.GetCounter().GetValue(), true
			}
		}
	}
	if !found {
		return -1
	}
	return n
}

// jobSyncs reads prefect_agent_job_syncs_total: the Job syncs the agent's
// Job controller finished, whatever their result.
func jobSyncs(t *testing.T, ra *runningAgent) float64 {
	t.Helper()
	n := counterSum(t, ra, "prefect_agent_job_syncs_total", "", "")
	if n < 0 {
		t.Fatal("the agent's metrics lack prefect_agent_job_syncs_total")
	}
	return n
}

// resync makes the agent's Job controller look again at the Jobs of runs
// (each named in its run's log) and waits until it has: a test that rules
// out a second report (or a deletion, a failure) after the first waits this
// way for the agent to have had its chance, instead of a fixed sleep.
//
// The controller syncs a Job only on an event, so resync causes one: it
// touches (an annotation the agent ignores) the Job's newest pod, so the
// sync sees the pods at least as the test last saw them; else the Job; once
// the Job is gone, it records an Event about it that the controller queues
// the Job on (reason FailedCreate, the UID of no Job), after waiting for the
// agent's cache to have lost the Job (a sync that starts later finds nothing
// to report on). Then it waits until the agent has finished one more Job
// sync per Job touched (prefect_agent_job_syncs_total), and does all that
// twice. A Job's syncs run one at a time, so when the run's Jobs are the
// agent's only ones, the second round counts a sync that began after
// every sync in progress at the first round's count (the one that wrote the
// report, say) ended; other Jobs' syncs count too, which makes it weaker.
func (e *env) resync(ra *runningAgent, runIDs ...string) {
	e.t.Helper()
	type job struct{ run, name string }
	var jobs []job
	for _, id := range runIDs {
		run, _ := e.em.FlowRun(id)
		for _, l := range logsAt(run, "INFO") {
			if _, name, ok := strings.Cut(l, "Submitted for execution: Job "); ok {
				jobs = append(jobs, job{id, name})
			}
		}
	}
	if len(jobs) == 0 {
		e.t.Fatalf("no Job named in the logs of %v", runIDs)
	}
	ctx := context.Background()
	gone := func(j job) bool {
		_, err := cluster.Client.BatchV1().Jobs(e.ns).Get(ctx, j.name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			e.t.Fatal(err)
		}
		return err != nil
	}
	// Two rounds, and one more while a Job went during the last one (the
	// agent's cache may still have had it).
	for round := 0; ; round++ {
		var there []job
		for _, j := range jobs {
			if !gone(j) {
				there = append(there, j)
				continue
			}
			eventually(e.t, "the agent to see Job "+j.name+" gone", func() bool {
				cached, ok := ra.agent.index.RunJobs(e.ns, j.run)
				if !ok {
					return false
				}
				for _, c := range cached {
					if c.Name == j.name {
						return false
					}
				}
				return true
			})
		}
		from := jobSyncs(e.t, ra)
		for _, j := range jobs {
			e.touchJob(j.run, j.name)
		}
		eventually(e.t, fmt.Sprintf("%d more Job syncs (%v so far)", len(jobs), from), func() bool {
			return jobSyncs(e.t, ra) >= from+float64(len(jobs))
		})
		went := false
		for _, j := range there {
			went = went || gone(j)
		}
		if round >= 1 && !went {
			return
		}
	}
}

// touchJob causes an event the Job controller queues a Job on: an
// annotation on its newest pod, else on the Job, else (the Job is gone) an
// Event about it.
func (e *env) touchJob(runID, name string) {
	e.t.Helper()
	ctx := context.Background()
	patch := []byte(`{"metadata":{"annotations":{"test/poke":"` + time.Now().Format(time.RFC3339Nano) + `"}}}`)
	pods, err := cluster.Client.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + runID})
	if err != nil {
		e.t.Fatal(err)
	}
	var newest *corev1.Pod
	for i, p := range pods.Items {
		for _, ref := range p.OwnerReferences {
			if ref.Kind == "Job" && ref.Name == name && (newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp)) {
				newest = &pods.Items[i]
			}
		}
	}
	if newest != nil {
		_, err := cluster.Client.CoreV1().Pods(e.ns).Patch(ctx, newest.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsNotFound(err) {
			e.t.Fatal(err)
		}
	}
	_, err = cluster.Client.BatchV1().Jobs(e.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err == nil {
		return
	}
	if !apierrors.IsNotFound(err) {
		e.t.Fatal(err)
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: name + ".poke."},
		InvolvedObject: corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: e.ns, Name: name},
		Reason:         "FailedCreate", Message: "test: poke a Job that is gone", Type: corev1.EventTypeNormal,
		Source: corev1.EventSource{Component: "test"}, FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if _, err := cluster.Client.CoreV1().Events(e.ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}
