// Package testbed starts a real Kubernetes control plane for integration
// tests: etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
// built from source by `make tools`, with kwok simulating nodes and pod
// lifecycles (see stages.yaml for the pod fates a test can ask for).
package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// binaries the test bed runs, all built into the tools folder by `make tools`.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwokctl", "kubectl"}

// RepoRoot is the project's top folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ToolsDir is where `make tools` puts the binaries (KUBECTL_PREFECT_TOOLS overrides it).
func ToolsDir() string {
	if d := os.Getenv("KUBECTL_PREFECT_TOOLS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), ".cache", "bin")
}

// Tool returns the path of one built tool, or an error that says how to build it.
func Tool(name string) (string, error) {
	p := filepath.Join(ToolsDir(), name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the test bed needs %s, which is not in %s: build the test binaries with `make tools` (about 10 minutes the first time)", name, ToolsDir())
	}
	return p, nil
}

func checkTools() (map[string]string, error) {
	paths := map[string]string{}
	for _, b := range binaries {
		p, err := Tool(b)
		if err != nil {
			return nil, err
		}
		paths[b] = p
	}
	return paths, nil
}
