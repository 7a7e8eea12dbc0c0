package agent

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

var update = flag.Bool("update", false, "rewrite the expected outputs in testdata")

// clearAgentEnv keeps the developer's environment out of the tests.
func clearAgentEnv(t *testing.T) {
	t.Helper()
	for _, names := range envFallbacks {
		for _, n := range names {
			t.Setenv(n, "")
		}
	}
	for _, n := range []string{"NAMESPACE", "PREFECT__LOGGING__LEVEL", "PREFECT__CLOUD__AGENT__AGENT_ADDRESS", "DELETE_FINISHED_JOBS"} {
		t.Setenv(n, "")
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
}

// runCommand runs an agent subcommand and returns what it printed and its error.
func runCommand(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	configFlags := genericclioptions.NewConfigFlags(true)
	cmd := NewCmdAgent(configFlags, streams)
	configFlags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// TestRender checks `agent render` against the expected Job (expected.yaml) or
// error (expected-error.txt) for each run config in testdata/render.
func TestRender(t *testing.T) {
	dirs, err := filepath.Glob("testdata/render/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no render cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			clearAgentEnv(t)
			rawArgs, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"render", "--run-config", filepath.Join(dir, "run-config.json")}, strings.Fields(string(rawArgs))...)
			stdout, _, runErr := runCommand(t, args...)
			wantFile, got := filepath.Join(dir, "expected.yaml"), stdout
			if strings.HasPrefix(filepath.Base(dir), "error-") {
				if runErr == nil {
					t.Fatalf("render succeeded, want an error; printed:\n%s", stdout)
				}
				wantFile, got = filepath.Join(dir, "expected-error.txt"), runErr.Error()+"\n"
			} else if runErr != nil {
				t.Fatalf("render: %v", runErr)
			}
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(want, []byte(got)) {
				t.Errorf("render output differs from %s\n--- got\n%s\n--- want\n%s", wantFile, got, want)
			}
		})
	}
}
