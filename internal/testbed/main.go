package testbed

import (
	"context"
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
func Run(m *testing.M, cluster **Cluster) int {
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
