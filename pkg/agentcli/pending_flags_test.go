package agentcli

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	agentjobs "github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
)

func TestPendingFlags(t *testing.T) {
	parse := func(args ...string) (*PendingFlags, error) {
		var f PendingFlags
		fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
		f.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return &f, f.Validate()
	}
	f, err := parse()
	if err != nil || f.Policy != agentjobs.DefaultPendingPolicy() {
		t.Fatalf("defaults: %+v, %v", f, err)
	}
	f, err = parse("--quota-timeout=0", "--unschedulable-grace=4m", "--image-pull-grace=30s")
	if err != nil {
		t.Fatal(err)
	}
	var cfg agentjobs.Config
	f.apply(&cfg)
	if cfg.Pending.QuotaTimeout != 0 || cfg.Pending.UnschedulableTimeout != 4*time.Minute || cfg.Pending.ImagePullGrace != 30*time.Second {
		t.Fatalf("parsed %+v", cfg.Pending)
	}
	if _, err := parse("--scale-up-timeout=-1m"); err == nil || !strings.Contains(err.Error(), "--scale-up-timeout -1m0s: expected 0 or a positive duration") {
		t.Fatalf("negative timeout: %v", err)
	}
}
