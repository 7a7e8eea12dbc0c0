// Package e2e runs the built binaries, kubectl-prefect as kubectl runs it and
// prefect-agent as the image runs it, against the test bed's cluster and the
// Prefect emulator. Everything here needs the cluster, so -short skips it.
package e2e

import (
	"flag"
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
	flag.Parse()
	if testing.Short() {
		os.Exit(testbed.Run(m, &cluster))
	}
	dir, err := os.MkdirTemp("", "kubectl-prefect-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, name := range []string{"kubectl-prefect", "prefect-agent"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		build.Dir = testbed.RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", name, err, out)
			os.Exit(1)
		}
	}
	code := testbed.Run(m, &cluster)
	os.RemoveAll(dir)
	os.Exit(code)
}
