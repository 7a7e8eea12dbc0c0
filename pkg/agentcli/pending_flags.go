package agentcli

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	agentjobs "github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

// PendingFlags are start's flags for Jobs whose flow has not started: the
// pending policy by reason (see agentjobs.PendingPolicyTable).
type PendingFlags struct {
	Policy agentjobs.PendingPolicy
}

// AddFlags registers the policy's flags with their defaults.
func (f *PendingFlags) AddFlags(fs *pflag.FlagSet) {
	f.Policy = agentjobs.DefaultPendingPolicy()
	p := &f.Policy
	fs.DurationVar(&p.QuotaTimeout, "quota-timeout", p.QuotaTimeout, "How long a run may wait for a ResourceQuota to admit its pod before it is failed (0: wait without limit)")
	fs.DurationVar(&p.AdmissionTimeout, "admission-timeout", p.AdmissionTimeout, "How long a run may wait while pod creation fails on an unreachable admission webhook or an API transport error (0: without limit)")
	fs.DurationVar(&p.UnschedulableTimeout, "unschedulable-timeout", p.UnschedulableTimeout, "How long a run's pod may stay unschedulable before the run is failed (0: without limit)")
	fs.DurationVar(&p.UnschedulableTimeout, "unschedulable-grace", p.UnschedulableTimeout, "Old name of --unschedulable-timeout")
	_ = fs.MarkDeprecated("unschedulable-grace", "use --unschedulable-timeout")
	fs.DurationVar(&p.ScaleUpTimeout, "scale-up-timeout", p.ScaleUpTimeout, "How long an unschedulable pod may wait once cluster-autoscaler triggered a scale-up for it (0: without limit)")
	fs.DurationVar(&p.MissingObjectTimeout, "missing-object-timeout", p.MissingObjectTimeout, "How long a run may wait for a missing ServiceAccount, Secret or ConfigMap (0: without limit)")
	fs.DurationVar(&p.ImagePullGrace, "image-pull-grace", p.ImagePullGrace, "How long a pod may fail to pull its image (ErrImagePull, ImagePullBackOff) before the run is failed (0: at once, as 1.4.1)")
}

// Validate refuses negative durations.
func (f *PendingFlags) Validate() error {
	p := f.Policy
	for _, d := range []struct {
		flag  string
		value time.Duration
	}{
		{"--quota-timeout", p.QuotaTimeout}, {"--admission-timeout", p.AdmissionTimeout}, {"--unschedulable-timeout", p.UnschedulableTimeout},
		{"--scale-up-timeout", p.ScaleUpTimeout}, {"--missing-object-timeout", p.MissingObjectTimeout}, {"--image-pull-grace", p.ImagePullGrace},
	} {
		if d.value < 0 {
			return fmt.Errorf("%s %s: expected 0 or a positive duration such as 10m", d.flag, d.value)
		}
	}
	return nil
}

// apply sets the policy in the agent's job management configuration.
func (f *PendingFlags) apply(cfg *agentjobs.Config) {
	policy := f.Policy
	cfg.Pending = &policy
}
