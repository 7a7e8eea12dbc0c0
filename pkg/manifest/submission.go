package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Submission identifies one submission of a flow run, and so its one Job:
// the run, the version of the Scheduled state the agent's Submitted mark
// claimed (the run's version before the mark; the mark's version is
// MarkedVersion of it, or more when writes tie), and for the relaunch of a
// Running run whose task runs retry, the relaunch key (empty otherwise).
type Submission struct {
	RunID    string
	Version  int
	Relaunch string
}

// AnnotationRelaunch records, on a relaunch's Job, its relaunch key.
const AnnotationRelaunch = "prefect.io/relaunch"

// MarkedVersion is the run's version right after a Submitted mark on the
// state at version: Server stores the run's version plus one.
func MarkedVersion(version int) int { return version + 1 }

// Identifier is the submission's hash: the Job's prefect.io/identifier label
// and the end of its name.
func (s Submission) Identifier() string {
	key := fmt.Sprintf("%s/%d", s.RunID, s.Version)
	if s.Relaunch != "" {
		key += "/" + s.Relaunch
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])[:12]
}

// JobName is the one name the submission's Job can have (prefix is the
// template's metadata.name), so a retried create meets AlreadyExists instead
// of making a second Job.
func (s Submission) JobName(prefix string) (string, error) {
	if prefix == "" {
		prefix = DefaultJobPrefix
	}
	if errs := validation.IsDNS1123Subdomain(prefix); len(errs) > 0 {
		return "", fmt.Errorf("job template metadata.name %q cannot start a Job name: %s", prefix, strings.Join(errs, "; "))
	}
	if len(prefix) > maxPrefix {
		prefix = strings.TrimRight(prefix[:maxPrefix], "-.")
	}
	return prefix + "-" + s.Identifier(), nil
}

// Labels are the labels that find the submission's Job and pods.
func (s Submission) Labels() map[string]string {
	return map[string]string{LabelIdentifier: s.Identifier(), LabelFlowRunID: s.RunID}
}

// Annotations record the submission on its Job.
func (s Submission) Annotations() map[string]string {
	out := map[string]string{AnnotationFlowRunVersion: strconv.Itoa(s.Version)}
	if s.Relaunch != "" {
		out[AnnotationRelaunch] = s.Relaunch
	}
	return out
}

// SubmissionOf reads a Job's submission back. A Job without the relaunch
// annotation (made before it existed) whose identifier is not its plain
// submission's is a relaunch with an unknown key.
func SubmissionOf(job *batchv1.Job) (Submission, bool) {
	runID := job.Labels[LabelFlowRunID]
	version, err := strconv.Atoi(job.Annotations[AnnotationFlowRunVersion])
	if runID == "" || err != nil {
		return Submission{}, false
	}
	s := Submission{RunID: runID, Version: version, Relaunch: job.Annotations[AnnotationRelaunch]}
	if s.Relaunch == "" && job.Labels[LabelIdentifier] != "" && job.Labels[LabelIdentifier] != s.Identifier() {
		s.Relaunch = "identifier:" + job.Labels[LabelIdentifier]
	}
	return s, true
}

// Is tells whether a Job is this submission's.
func (s Submission) Is(job *batchv1.Job) bool {
	other, ok := SubmissionOf(job)
	return ok && other.RunID == s.RunID && other.Version == s.Version && job.Labels[LabelIdentifier] == s.Identifier()
}

// Supersedes tells whether s replaces other: a new submission (not a
// relaunch for task runs, which leaves the run's earlier Job alone) of the
// same run from a later Scheduled state.
func (s Submission) Supersedes(other Submission) bool {
	return s.RunID == other.RunID && s.Relaunch == "" && s.Version > other.Version
}
