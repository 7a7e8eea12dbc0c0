package manifest

import (
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// jobOf is the Job a submission would make (name, labels, annotations only).
func jobOf(t *testing.T, s Submission) *batchv1.Job {
	t.Helper()
	name, err := s.JobName("")
	if err != nil {
		t.Fatal(err)
	}
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: s.Labels(), Annotations: s.Annotations()}}
}

func TestSubmissionReadsBackFromItsJob(t *testing.T) {
	const run = "0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d"
	plain := Submission{RunID: run, Version: 3}
	relaunch := Submission{RunID: run, Version: 5, Relaunch: "task-a:2"}
	for _, s := range []Submission{plain, relaunch} {
		got, ok := SubmissionOf(jobOf(t, s))
		if !ok || got != s || !s.Is(jobOf(t, s)) {
			t.Errorf("read back %+v (%v), want %+v", got, ok, s)
		}
	}
	// A relaunch's Job made before the relaunch annotation existed is still
	// told from a plain submission by its identifier.
	legacy := jobOf(t, relaunch)
	delete(legacy.Annotations, AnnotationRelaunch)
	if got, ok := SubmissionOf(legacy); !ok || got.Relaunch == "" {
		t.Errorf("a legacy relaunch Job reads back as %+v", got)
	}
	if _, ok := SubmissionOf(&batchv1.Job{}); ok {
		t.Error("a Job without the labels reads back as a submission")
	}
	if plain.Is(jobOf(t, Submission{RunID: run, Version: 4})) {
		t.Error("another version's Job is taken for this submission's")
	}
	if MarkedVersion(3) != 4 {
		t.Errorf("MarkedVersion(3) = %d", MarkedVersion(3))
	}
}

func TestSubmissionSupersedes(t *testing.T) {
	const run = "run"
	for _, tc := range []struct {
		name     string
		newer    Submission
		older    Submission
		replaces bool
	}{
		{"a later submission", Submission{RunID: run, Version: 4}, Submission{RunID: run, Version: 1}, true},
		{"the same submission", Submission{RunID: run, Version: 1}, Submission{RunID: run, Version: 1}, false},
		{"an earlier submission", Submission{RunID: run, Version: 1}, Submission{RunID: run, Version: 4}, false},
		{"a relaunch leaves the earlier Job alone", Submission{RunID: run, Version: 6, Relaunch: "t:2"}, Submission{RunID: run, Version: 1}, false},
		{"a later submission replaces a relaunch", Submission{RunID: run, Version: 9}, Submission{RunID: run, Version: 6, Relaunch: "t:2"}, true},
		{"another run", Submission{RunID: "other", Version: 9}, Submission{RunID: run, Version: 1}, false},
	} {
		if got := tc.newer.Supersedes(tc.older); got != tc.replaces {
			t.Errorf("%s: Supersedes = %v, want %v", tc.name, got, tc.replaces)
		}
	}
}
