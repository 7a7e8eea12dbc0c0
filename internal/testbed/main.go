package testbed

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// Run is for TestMain: it starts one cluster for the whole test binary, runs
// the tests, and tears the cluster down, also when the run is interrupted.
// Missing binaries fail the run with the command that builds them.
//
// Under -short no cluster starts and *cluster stays nil: the tests that need
// one skip through Cluster's methods (Namespace, Require), so unit tests run
// in seconds without the test binaries.
func Run(m *testing.M, cluster **Cluster) int {
	if !flag.Parsed() {
		flag.Parse() // testing.Short needs the flags parsed
	}
	if testing.Short() {
		*cluster = nil
		return m.Run()
	}
	start := time.Now()
	c, err := Start(context.Background(), 2)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test bed: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "test bed: cluster %s up in %s\n", c.Name, time.Since(start).Round(time.Millisecond))
	*cluster = c

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sig; ok {
			c.Stop()
			os.Exit(1)
		}
	}()
	code := m.Run()
	signal.Stop(sig)
	close(sig)
	c.Stop()
	return code
}
