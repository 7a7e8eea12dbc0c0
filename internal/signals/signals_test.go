package signals

import (
	"bytes"
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestFirstSignalCancelsSecondForcesExit(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	exited := make(chan int, 1)
	finished := make(chan struct{})
	go func() {
		watch(sigs, make(chan struct{}), cancel, &out, func(code int) { exited <- code })
		close(finished)
	}()

	sigs <- syscall.SIGTERM
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the first SIGTERM did not cancel the context")
	}
	select {
	case code := <-exited:
		t.Fatalf("the first signal exited the process with %d; it must only start the graceful stop", code)
	case <-time.After(50 * time.Millisecond):
	}

	sigs <- os.Interrupt
	select {
	case code := <-exited:
		if code != ForcedExitCode {
			t.Fatalf("exit code %d, want %d", code, ForcedExitCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal did not force the exit")
	}
	<-finished
	if got, want := out.String(), "Received a second interrupt: exiting without waiting for the graceful stop.\n"; got != want {
		t.Fatalf("stderr = %q, want %q", got, want)
	}
}

func TestStopEndsTheWatchWithoutExiting(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		watch(sigs, done, cancel, &bytes.Buffer{}, func(code int) { t.Errorf("exit(%d) without a signal", code) })
		close(finished)
	}()
	close(done)
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end when stopped")
	}
	if ctx.Err() != nil {
		t.Fatal("stopping without a signal cancelled the context")
	}
}
