package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentLinksNoPluginMachinery keeps the image's binary lean: none of
// cli-runtime (printers, resource builder), kustomize, the install objects or
// the plugin's commands may creep into its imports.
func TestAgentLinksNoPluginMachinery(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps listed only %d packages", len(deps))
	}
	for _, dep := range deps {
		for _, banned := range []string{
			"k8s.io/cli-runtime/", "sigs.k8s.io/kustomize/",
			"github.com/kubectl-prefect/kubectl-prefect/pkg/install",
			"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd",
		} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("prefect-agent imports %s", dep)
			}
		}
	}
}
