package jobs

import (
	"bytes"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

func limitedJob(name, flow, labels string, finished bool) batchv1.Job {
	j := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
		manifest.AnnotationConcurrencyLimits: "10,label=gpu:2,flow=etl-*:1", manifest.AnnotationFlowName: flow}}}
	if labels != "" {
		j.Annotations[manifest.AnnotationFlowRunLabels] = labels
	}
	if finished {
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	}
	return j
}

// TestJobsShowsTheLimitsInUse: under the table, on stderr, each limit the
// agent recorded on its Jobs with the unfinished Jobs it counts; not with
// filters (the count would leave Jobs out) nor for machine output.
func TestJobsShowsTheLimitsInUse(t *testing.T) {
	jobs := []batchv1.Job{
		limitedJob("a", "etl-daily", `["k8s","gpu"]`, false),
		limitedJob("b", "report", `["gpu"]`, false),
		limitedJob("c", "report", `["k8s"]`, false),
		limitedJob("d", "etl-hourly", `["gpu"]`, true),
		{ObjectMeta: metav1.ObjectMeta{Name: "no-limits"}},
	}
	want := "Concurrency limits in use (--limit 10,label=gpu:2,flow=etl-*:1): all 3/10, label=gpu 2/2, flow=etl-* 1/1"
	if got := limitLines(jobs); len(got) != 1 || got[0] != want {
		t.Fatalf("limit lines %q, want %q", got, want)
	}
	for _, tc := range []struct {
		name  string
		o     Options
		shown bool
	}{
		{"table", Options{}, true},
		{"wide", Options{output: "wide"}, true},
		{"json", Options{output: "json"}, false},
		{"flow filter", Options{Flow: "etl"}, false},
		{"selector", Options{Selector: "team=data"}, false},
	} {
		var errOut bytes.Buffer
		tc.o.IOStreams = genericiooptions.IOStreams{ErrOut: &errOut}
		tc.o.printLimits(jobs)
		if got := strings.Contains(errOut.String(), want); got != tc.shown {
			t.Errorf("%s: limits shown %v, want %v (%q)", tc.name, got, tc.shown, errOut.String())
		}
	}
}
