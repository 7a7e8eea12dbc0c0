package agent

import (
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

func TestParseLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Limit
		err  string
	}{
		{in: "50", want: Limit{Kind: LimitAll, Max: 50}},
		{in: " label=gpu:4 ", want: Limit{Kind: LimitLabel, Pattern: "gpu", Max: 4}},
		{in: "flow=etl-*:1", want: Limit{Kind: LimitFlow, Pattern: "etl-*", Max: 1}},
		{in: "flow=a:b:2", want: Limit{Kind: LimitFlow, Pattern: "a:b", Max: 2}},
		{in: "label=gpu:0", want: Limit{Kind: LimitLabel, Pattern: "gpu", Max: 0}},
		{in: "fifty", err: `limit "fifty": expected MAX, label=PATTERN:MAX or flow=PATTERN:MAX`},
		{in: "-1", err: `limit "-1": expected MAX`},
		{in: "tag=gpu:4", err: `limit "tag=gpu:4": unknown kind "tag"`},
		{in: "label=gpu", err: `limit "label=gpu": no maximum after the label pattern`},
		{in: "label=gpu:x", err: `limit "label=gpu:x": the maximum "x" is not a whole number of 0 or more`},
		{in: "label=:3", err: `limit "label=:3": the label pattern is empty`},
		{in: "flow=[etl:3", err: `limit "flow=[etl:3": "[etl" is not a valid pattern`},
	} {
		got, err := ParseLimit(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLimit(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if again, err := ParseLimit(got.String()); err != nil || again != got {
			t.Errorf("%q does not read back: %+v, %v", got.String(), again, err)
		}
	}
}

func TestLimitMatches(t *testing.T) {
	run := runFacts{flow: "etl-daily", labels: []string{"k8s", "gpu-a100"}}
	for _, tc := range []struct {
		limit string
		want  bool
	}{
		{"3", true}, {"flow=etl-*:1", true}, {"flow=etl:1", false}, {"label=gpu-*:1", true}, {"label=gpu:1", false}, {"label=k8s:1", true},
	} {
		l, _ := ParseLimit(tc.limit)
		if got := l.matches(run); got != tc.want {
			t.Errorf("%s matches %+v = %v, want %v", tc.limit, run, got, tc.want)
		}
	}
}

// indexedJob is a Job of the agent's Job index for a run.
func indexedJob(name, runID string, version int, flow, labels string, finished bool) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{manifest.LabelFlowRunID: runID},
		Annotations: map[string]string{manifest.AnnotationFlowRunVersion: itoa(version), manifest.AnnotationFlowName: flow}}}
	if labels != "" {
		j.Annotations[manifest.AnnotationFlowRunLabels] = labels
	}
	if finished {
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	}
	return j
}

func itoa(i int) string { return strconv.Itoa(i) }

// testIndex is a JobIndex over a list of Jobs; unsynced, it answers nothing.
type testIndex struct {
	synced bool
	jobs   []*batchv1.Job
}

func testIndexer(jobs ...*batchv1.Job) *testIndex { return &testIndex{synced: true, jobs: jobs} }

func (x *testIndex) add(j *batchv1.Job) { x.jobs = append(x.jobs, j) }

func (x *testIndex) RunJobs(namespace, runID string) ([]*batchv1.Job, bool) {
	var out []*batchv1.Job
	for _, j := range x.jobs {
		if j.Labels[manifest.LabelFlowRunID] == runID && (namespace == metav1.NamespaceAll || j.Namespace == namespace) {
			out = append(out, j)
		}
	}
	return out, x.synced
}

func (x *testIndex) Unfinished() ([]metav1.Object, bool) {
	var out []metav1.Object
	for _, j := range x.jobs {
		if !manifest.JobFinished(j) && j.DeletionTimestamp == nil {
			out = append(out, j)
		}
	}
	return out, x.synced
}

// TestLimiterCountsUnfinishedJobsAndReservations: the cache's unfinished
// Jobs and the admitted runs whose Job is not in the cache yet hold the
// limits; a finished Job does not; a reservation goes once its Job shows up.
func TestLimiterCountsUnfinishedJobsAndReservations(t *testing.T) {
	now := time.Unix(1000, 0)
	limits := []Limit{{Kind: LimitAll, Max: 3}, {Kind: LimitLabel, Pattern: "gpu", Max: 1}}
	l := newLimiter(limits, func() time.Time { return now })
	l.recoveryPassed()
	l.recoveryPassed()
	jobs := testIndexer(
		indexedJob("a", "run-a", 1, "etl", `["gpu"]`, false),
		indexedJob("b", "run-b", 1, "etl", `["k8s"]`, true),
	)
	ad, ok := l.begin(jobs)
	if !ok {
		t.Fatal("the limiter is closed after two recovery passes with a cache")
	}
	if got := ad.admit("run-c", 1, runFacts{flow: "x", labels: []string{"gpu"}}); got == nil || got.limit.Name() != "label=gpu" || got.using != 1 {
		t.Fatalf("a second gpu run was not held by label=gpu with 1 holding it: %+v", got)
	}
	if !ad.note("run-c") || ad.note("run-c") {
		t.Fatal("a held run's line is due once")
	}
	if got := ad.admit("run-d", 1, runFacts{flow: "x"}); got != nil {
		t.Fatalf("run-d held: %+v", got)
	}
	if got := ad.admit("run-e", 1, runFacts{flow: "x"}); got != nil {
		t.Fatalf("run-e held: %+v", got)
	}
	if got := ad.admit("run-f", 1, runFacts{flow: "x"}); got == nil || got.limit.Name() != "all" || got.using != 3 {
		t.Fatalf("a fourth run was not held by all with 3: %+v", got)
	}
	ad.end()
	// run-d's Job reaches the cache: its reservation gives way to the Job.
	jobs.add(indexedJob("d", "run-d", 1, "x", "", false))
	if u := l.inUse(jobs); u[0] != 3 || len(l.reserved) != 1 {
		t.Fatalf("in use %v with reservations %v, want 3 and run-e's alone", u, l.reserved)
	}
	// run-e's submission ended without a Job: its slot frees after the linger.
	l.ended("run-e")
	if u := l.inUse(jobs); u[0] != 3 {
		t.Fatalf("in use %v right after run-e ended, want 3 (its Job may be on its way)", u)
	}
	now = now.Add(reservationLinger + time.Second)
	if u := l.inUse(jobs); u[0] != 2 {
		t.Fatalf("in use %v after the linger, want 2", u)
	}
}

// TestLimiterWaitsForTheTruth: no run starts before the Job cache synced and
// the two recovery passes at start ran, nor while a recovery worker decides.
func TestLimiterWaitsForTheTruth(t *testing.T) {
	l := newLimiter([]Limit{{Kind: LimitAll, Max: 3}}, time.Now)
	jobs := testIndexer()
	if _, ok := l.begin(&testIndex{}); ok {
		t.Fatal("admitting without a Job cache")
	}
	l.recoveryPassed()
	if _, ok := l.begin(jobs); ok {
		t.Fatal("admitting after one recovery pass")
	}
	l.recoveryPassed()
	l.recoveryQueued()
	if _, ok := l.begin(jobs); ok {
		t.Fatal("admitting while a recovery worker decides")
	}
	l.recoveryDone("")
	ad, ok := l.begin(jobs)
	if !ok {
		t.Fatal("closed with everything known")
	}
	ad.end()
}
