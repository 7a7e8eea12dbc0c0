// Package e2e runs the built kubectl-prefect binary, as kubectl runs it, against
// the test bed's cluster and the Prefect emulator.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

var (
	cluster *testbed.Cluster
	// binDir holds the built plugin; it goes first on PATH for kubectl.
	binDir string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kubectl-prefect-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-prefect"), "./cmd/kubectl-prefect")
	build.Dir = testbed.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building kubectl-prefect: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testbed.Run(m, &cluster)
	os.RemoveAll(dir)
	os.Exit(code)
}
