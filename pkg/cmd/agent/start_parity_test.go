package agent

import (
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
)

// TestPrefectAgentTakesTheSameFlagsAsAgentStart: the image's binary and
// `kubectl prefect agent start` share every agent flag, with the same
// shorthand, default and help; only the connection flags differ.
func TestPrefectAgentTakesTheSameFlagsAsAgentStart(t *testing.T) {
	describe := func(fs *pflag.FlagSet, skip map[string]bool) []string {
		var out []string
		fs.VisitAll(func(f *pflag.Flag) {
			if !skip[f.Name] {
				out = append(out, strings.Join([]string{f.Name, f.Shorthand, f.Value.Type(), f.DefValue, f.Usage}, " | "))
			}
		})
		sort.Strings(out)
		return out
	}
	start := NewCmdStart(genericclioptions.NewConfigFlags(true), genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})
	lean := agentcli.NewCmdPrefectAgent(io.Discard, io.Discard)
	lean.InitDefaultHelpFlag()
	lean.InitDefaultVersionFlag()
	connection := map[string]bool{"kubeconfig": true, "context": true, "namespace": true, "v": true, "vmodule": true, "version": true, "help": true}
	got, want := describe(lean.Flags(), connection), describe(start.Flags(), map[string]bool{"help": true})
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("prefect-agent flags:\n%s\n\nagent start flags:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(want) < 29 {
		t.Fatalf("only %d agent flags compared", len(want))
	}
}
