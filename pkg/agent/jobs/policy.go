package jobs

import (
	"fmt"
	"strings"
	"time"
)

// PendingPolicy says how long a flow run's Job may wait, by why it waits,
// before the agent gives up: it then deletes the Job (so its pod cannot start
// later) and sets the run Failed. A zero timeout never gives up on that reason;
// a zero ImagePullGrace fails at once, as the 1.4.1 agent did.
type PendingPolicy struct {
	// QuotaTimeout: the Job controller cannot create the pod because a
	// ResourceQuota is exhausted (a quota used as a queue).
	QuotaTimeout time.Duration
	// AdmissionTimeout: pod creation failed on an admission webhook that did
	// not answer or on an API server transport error.
	AdmissionTimeout time.Duration
	// UnschedulableTimeout: the scheduler finds no node for the pod.
	UnschedulableTimeout time.Duration
	// ScaleUpTimeout replaces UnschedulableTimeout while cluster-autoscaler
	// reports it triggered a scale-up for the pod (TriggeredScaleUp).
	ScaleUpTimeout time.Duration
	// MissingObjectTimeout: the pod's ServiceAccount, or a Secret or ConfigMap
	// its containers read, does not exist yet.
	MissingObjectTimeout time.Duration
	// ImagePullGrace: the image cannot be pulled (ErrImagePull,
	// ImagePullBackOff); registries throttle, so a pull may succeed later.
	ImagePullGrace time.Duration
}

// DefaultPendingPolicy waits longer than cluster autoscalers, Karpenter and
// GPU node pools take to bring a node, and no longer than Prefect Server's
// Lazarus (10 minutes) would wait before rescheduling the run itself.
func DefaultPendingPolicy() PendingPolicy {
	return PendingPolicy{
		QuotaTimeout:         10 * time.Minute,
		AdmissionTimeout:     10 * time.Minute,
		UnschedulableTimeout: 10 * time.Minute,
		ScaleUpTimeout:       15 * time.Minute,
		MissingObjectTimeout: 10 * time.Minute,
		ImagePullGrace:       3 * time.Minute,
	}
}

// Reasons a Job waits, as the waiting annotation, the metric and
// `kubectl prefect jobs` name them.
const (
	waitQuota         = "quota"
	waitAdmission     = "admission"
	waitUnschedulable = "unschedulable"
	waitScaleUp       = "scale-up"
	waitMissingObject = "missing-object"
	waitImagePull     = "image-pull"
)

// timeout is the policy's limit for a waiting reason.
func (p PendingPolicy) timeout(reason string) time.Duration {
	switch reason {
	case waitQuota:
		return p.QuotaTimeout
	case waitAdmission:
		return p.AdmissionTimeout
	case waitUnschedulable:
		return p.UnschedulableTimeout
	case waitScaleUp:
		return p.ScaleUpTimeout
	case waitMissingObject:
		return p.MissingObjectTimeout
	case waitImagePull:
		return p.ImagePullGrace
	}
	return 0
}

// failsAtZero tells the reasons whose zero limit means "at once" rather than "never".
func failsAtZero(reason string) bool { return reason == waitImagePull }

// PolicyRow is one line of the pending policy table (README, --help).
type PolicyRow struct {
	Reason, Default, Flag, RunShows string
}

// PendingPolicyTable describes what the agent does with a run whose pod has
// not started, by reason.
func PendingPolicyTable() []PolicyRow {
	d := DefaultPendingPolicy()
	waits := "WARNING with Kubernetes' message at once; stays Submitted; Failed after the timeout, Job deleted"
	return []PolicyRow{
		{"FailedCreate: exceeded quota", short(d.QuotaTimeout), "--quota-timeout", waits},
		{"FailedCreate: webhook or API transport error", short(d.AdmissionTimeout), "--admission-timeout", waits},
		{"Unschedulable (NotTriggerScaleUp: one more WARNING, \"no node group can fit\")", short(d.UnschedulableTimeout), "--unschedulable-timeout", waits},
		{"Unschedulable, cluster-autoscaler TriggeredScaleUp", short(d.ScaleUpTimeout), "--scale-up-timeout", waits},
		{"ServiceAccount, Secret or ConfigMap missing", short(d.MissingObjectTimeout), "--missing-object-timeout", waits},
		{"ErrImagePull, ImagePullBackOff (0: at once, as 1.4.1)", short(d.ImagePullGrace), "--image-pull-grace", "WARNING at once; Failed after the grace (0: at once, as 1.4.1), Job deleted"},
		{"InvalidImageName, ErrImageNeverPull", "at once", "-", "ERROR and Failed, Job deleted"},
		{"FailedCreate: Pod Security, LimitRange, validation, webhook denial", "at once", "-", "ERROR and Failed, Job deleted"},
	}
}

// short writes a duration as people do: 10m, 3m, 90s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// PendingPolicyHelp is the policy table as plain text for `agent start --help`.
func PendingPolicyHelp() string {
	var b strings.Builder
	b.WriteString("Pending policy (a timeout of 0 never fails the run on that reason):\n")
	for _, r := range PendingPolicyTable() {
		fmt.Fprintf(&b, "  %-26s %-8s %s\n", r.Flag, r.Default, r.Reason)
	}
	b.WriteString("  A run that waits gets one WARNING line at once and stays Submitted; when it\n" +
		"  gives up, its Job is deleted and the run set Failed with the reason and the wait.\n")
	return b.String()
}

// failedCreateKind sorts a FailedCreate event message: a waiting reason, or
// "" for a denial that cannot pass without a change (Pod Security,
// LimitRange, validation, a webhook that answered no).
func failedCreateKind(message string) string {
	m := strings.ToLower(message)
	switch {
	case strings.Contains(m, "exceeded quota"):
		return waitQuota
	case strings.Contains(m, "error looking up service account"), strings.Contains(m, "serviceaccount") && strings.Contains(m, "not found"):
		return waitMissingObject
	case strings.Contains(m, "failed calling webhook"),
		strings.Contains(m, "context deadline exceeded"), strings.Contains(m, "connection refused"),
		strings.Contains(m, "connection reset"), strings.Contains(m, "i/o timeout"),
		strings.Contains(m, "tls handshake timeout"), strings.Contains(m, "the server is currently unable"),
		strings.Contains(m, "timeout: request did not complete"), strings.Contains(m, "etcdserver"),
		strings.Contains(m, "http2:"), strings.Contains(m, "unexpected eof"):
		return waitAdmission
	}
	return ""
}
