package agent

import (
	"os"
	"testing"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

var cluster *testbed.Cluster

func TestMain(m *testing.M) { os.Exit(testbed.Run(m, &cluster)) }
