package logs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// followFlush is how long -f still streams the containers' output once the
// run finished in Prefect.
const followFlush = 10 * time.Second

// streamEnd is what a pod's stream sends when it ends: which pod, and why
// it could not be opened (the pod is tried again), if it could not.
type streamEnd struct {
	pod corev1.Pod
	err error
}

// follower is the state of -f: the pods it follows and the streams open.
type follower struct {
	o       *Options
	out     chan line
	ends    chan streamEnd
	streams int
	// followed holds the pods whose output is followed or was printed.
	followed map[types.UID]bool
	// since is where each pod's output starts (a stream opened again
	// starts where the first began).
	since map[types.UID]time.Time
	// warned holds the pods whose stream could not be opened (said once).
	warned map[types.UID]bool
}

// follow streams the containers' output and polls Prefect's log until the
// run finishes in Prefect and the streams end (or ctx ends). Pods that
// start later (the run's pod once scheduled, a replacement, a new attempt)
// are picked up at each poll, from their first line (or since).
func (o *Options) follow(ctx context.Context, runID string, since time.Time, pods []corev1.Pod, printed []line, state string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &follower{o: o, out: make(chan line, 256), ends: make(chan streamEnd, 16),
		followed: map[types.UID]bool{}, since: map[types.UID]time.Time{}, warned: map[types.UID]bool{}}
	if !o.PrefectOnly {
		now := time.Now()
		for _, p := range pods {
			if podFinished(p) {
				f.followed[p.UID] = true // printed already
				continue
			}
			if p.Status.Phase == corev1.PodRunning {
				f.since[p.UID] = now // printed up to now
			}
			f.start(ctx, p, since)
		}
	}
	seen := map[string]bool{}
	last := time.Time{}
	for _, l := range printed {
		if l.prefect {
			seen[l.source+l.text] = true
		}
		if l.prefect && l.time.After(last) {
			last = l.time
		}
	}
	ticker := time.NewTicker(o.PollInterval)
	defer ticker.Stop()
	finished := prefect.Finished(state)
	// flushed ends the wait for the containers' last lines once the run
	// finished in Prefect.
	var flushed <-chan time.Time
	// drain prints the lines already copied: a stream sends all its lines
	// before its end, but select may take the end first.
	drain := func() {
		for {
			select {
			case l := <-f.out:
				fmt.Fprintln(o.Out, l)
			default:
				return
			}
		}
	}
	for {
		if finished && f.streams == 0 {
			drain()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-flushed:
			drain()
			return nil
		case l := <-f.out:
			fmt.Fprintln(o.Out, l)
		case end := <-f.ends:
			drain()
			f.streams--
			if end.err != nil && ctx.Err() == nil {
				delete(f.followed, end.pod.UID) // tried again at the next poll
				if !f.warned[end.pod.UID] {
					f.warned[end.pod.UID] = true
					fmt.Fprintf(o.ErrOut, "Warning: following the output of container %q of pod %s (trying again): %v\n", o.container(&end.pod), end.pod.Name, end.err)
				}
			}
		case <-ticker.C:
			var st string
			var err error
			if o.PodOnly {
				st, err = o.runState(ctx, runID)
			} else {
				var got []line
				got, st, err = o.prefectLines(ctx, runID, last, nil)
				for _, l := range got {
					if seen[l.source+l.text] {
						continue
					}
					seen[l.source+l.text] = true
					if l.time.After(last) {
						last = l.time
					}
					fmt.Fprintln(o.Out, l)
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil // interrupted
				}
				return err
			}
			if !o.PrefectOnly {
				f.discover(ctx, runID, since)
			}
			finished = prefect.Finished(st)
			if finished && f.streams > 0 && flushed == nil {
				// Give the containers a moment to flush their last lines.
				flushed = time.After(followFlush)
			}
		}
	}
}

// discover follows the pods of the chosen attempts not followed yet. A
// failed look is left for the next poll.
func (f *follower) discover(ctx context.Context, runID string, since time.Time) {
	jobs, err := f.o.attempts(ctx, runID)
	if err != nil {
		return
	}
	pods, err := f.o.pods(ctx, runID, jobs)
	if err != nil {
		return
	}
	for _, p := range pods {
		if !f.followed[p.UID] {
			f.start(ctx, p, since)
		}
	}
}

// start follows a running pod, or prints the output of one that finished;
// a pod still pending is left for a later poll. since is where its output
// starts unless an earlier start of the pod said otherwise.
func (f *follower) start(ctx context.Context, p corev1.Pod, since time.Time) {
	if s, ok := f.since[p.UID]; ok {
		since = s
	}
	f.since[p.UID] = since
	if podFinished(p) {
		f.followed[p.UID] = true
		got, err := f.o.podLines(ctx, p, since)
		if err != nil {
			fmt.Fprintf(f.o.ErrOut, "Warning: %v\n", err)
			return
		}
		for _, l := range got {
			fmt.Fprintln(f.o.Out, l)
		}
		return
	}
	if p.Status.Phase != corev1.PodRunning {
		return
	}
	f.followed[p.UID] = true
	f.streams++
	go f.stream(ctx, p, since)
}

// stream copies a pod's output into f.out, then reports its end.
func (f *follower) stream(ctx context.Context, p corev1.Pod, since time.Time) {
	end := streamEnd{pod: p}
	defer func() {
		select {
		case f.ends <- end:
		case <-ctx.Done():
		}
	}()
	opts := f.o.podLogOptions(p, since, true)
	rc, err := f.o.client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, opts).Stream(ctx)
	if err != nil {
		end.err = err
		return
	}
	defer rc.Close()
	source := "[pod/" + p.Name + "/" + opts.Container + "]"
	readLines(rc, func(text string) {
		select {
		case f.out <- parsePodLine(source, text, time.Now()):
		case <-ctx.Done():
		}
	})
}

func podFinished(p corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func (o *Options) runState(ctx context.Context, runID string) (string, error) {
	page, _, err := o.access.Client.RunLogs(ctx, runID, o.now(), 1)
	return page.State, err
}

// readLines calls f with each line of r.
func readLines(r io.Reader, f func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f(sc.Text())
	}
}
