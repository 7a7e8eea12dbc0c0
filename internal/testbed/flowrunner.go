package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// The flow runner is Prefect 1.4.1 in a Python virtual environment that
// `make tools` builds next to the test binaries (.cache/python beside
// .cache/bin), so KUBECTL_PREFECT_TOOLS=/elsewhere/.cache/bin finds
// /elsewhere/.cache/python. KUBECTL_PREFECT_PYTHON names another one.

// FlowRunnerDir is the flow runner's virtual environment.
func FlowRunnerDir() string {
	if d := os.Getenv("KUBECTL_PREFECT_PYTHON"); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(ToolsDir()), "python")
}

// FlowsDir holds the test flows (Python package testflows), the PYTHONPATH
// of every flow the executor runs.
func FlowsDir() string { return filepath.Join(RepoRoot(), "test", "flows") }

// checkFlowRunner returns the flow runner's bin folder, or an error naming
// the command that builds it.
func checkFlowRunner() (string, error) {
	bin := filepath.Join(FlowRunnerDir(), "bin")
	if _, err := os.Stat(filepath.Join(bin, "prefect")); err != nil {
		return "", fmt.Errorf("the test bed runs real flows with Prefect 1.4.1's flow runner, which is not in %s: build it with `make tools` (it needs Python 3.9 to 3.12; about a minute)", FlowRunnerDir())
	}
	return bin, nil
}

var serialized struct {
	once  sync.Once
	flows map[string]json.RawMessage
	err   error
}

// SerializedFlow returns a test flow as `prefect register` sends it
// (Flow.serialize()), by module name, for example "testflows.three_tasks".
// The flows are serialized once per test binary by the flow runner's Python.
func SerializedFlow(module string) (json.RawMessage, error) {
	serialized.once.Do(func() {
		bin, err := checkFlowRunner()
		if err != nil {
			serialized.err = err
			return
		}
		cmd := exec.Command(filepath.Join(bin, "python"), "-m", "testflows.serialize")
		cmd.Dir = FlowsDir()
		cmd.Env = append(os.Environ(), "PYTHONPATH="+FlowsDir(), "PREFECT__USER_CONFIG_PATH=/nonexistent/config.toml")
		out, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			serialized.err = fmt.Errorf("serializing the test flows: %w", err)
			return
		}
		serialized.err = json.Unmarshal(out, &serialized.flows)
	})
	if serialized.err != nil {
		return nil, serialized.err
	}
	f, ok := serialized.flows[module]
	if !ok {
		return nil, fmt.Errorf("no test flow %q: the modules are listed in test/flows/testflows/__init__.py", module)
	}
	return f, nil
}
