// Package signals turns SIGINT and SIGTERM into a cancelled context: the
// first signal starts a graceful stop, a second one forces the exit.
package signals

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
)

// ForcedExitCode is the exit status after a second signal.
const ForcedExitCode = 1

// Context returns a context that is cancelled on the first SIGINT or SIGTERM;
// on a second one the process exits at once, saying so on errOut. stop
// releases the signals (call it when the program is done).
func Context(parent context.Context, errOut io.Writer) (ctx context.Context, stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		watch(sigs, done, cancel, errOut, func(code int) {
			klog.Flush()
			os.Exit(code)
		})
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// watch cancels on the first signal and calls exit on the second, until done.
func watch(sigs <-chan os.Signal, done <-chan struct{}, cancel context.CancelFunc, errOut io.Writer, exit func(int)) {
	select {
	case <-sigs:
		cancel()
	case <-done:
		return
	}
	select {
	case s := <-sigs:
		fmt.Fprintf(errOut, "Received a second %s: exiting without waiting for the graceful stop.\n", s)
		exit(ForcedExitCode)
	case <-done:
	}
}
