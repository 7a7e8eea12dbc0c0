package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// LeaderElection configures the Lease that lets one replica work at a time.
type LeaderElection struct {
	// LeaseName and Namespace name the Lease object.
	LeaseName, Namespace string
	// Identity names this replica (its pod name, say) and must be unique.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod default to 15 s, 10 s and 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// errLostLease ends the agent when another replica took over its Lease.
var errLostLease = errors.New("lost the leader Lease to another replica; stopping so this one restarts as a standby")

// runAsLeader waits to hold the Lease, then works while it holds it.
func (a *Agent) runAsLeader(ctx context.Context) error {
	le := a.cfg.LeaderElection
	log := klog.FromContext(ctx)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: le.LeaseName, Namespace: le.Namespace},
		Client:     a.cfg.Kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	// The elector releases the Lease when electCtx ends, so electCtx outlives
	// ctx while this replica leads: the Lease goes only after the guarded
	// work (submissions in flight, job management) has ended.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	var leading atomic.Bool
	go func() {
		select {
		case <-ctx.Done():
			if !leading.Load() {
				stopElecting() // a standby just stops
			}
		case <-electCtx.Done():
		}
	}()
	// OnStartedLeading runs on its own goroutine; its outcome comes back here.
	type outcome struct {
		err      error
		finished bool // ended by itself (--max-polls), not by losing the Lease
	}
	started, ended := make(chan struct{}), make(chan outcome, 1)
	a.standby.Store(true)
	defer a.standby.Store(false)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   orDefault(le.LeaseDuration, 15*time.Second),
		RenewDeadline:   orDefault(le.RenewDeadline, 10*time.Second),
		RetryPeriod:     orDefault(le.RetryPeriod, 2*time.Second),
		ReleaseOnCancel: true,
		Name:            le.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				leading.Store(true)
				log.Info("Became the leader; submitting and managing Jobs", "lease", le.LeaseName, "identity", le.Identity)
				close(started)
				a.standby.Store(false)
				// The term ends when the agent stops or the Lease is lost;
				// work then stops as stop.go describes.
				termCtx, endTerm := context.WithCancel(leadCtx)
				stop := context.AfterFunc(ctx, endTerm)
				err := a.work(termCtx)
				stop()
				endTerm()
				ended <- outcome{err: err, finished: leadCtx.Err() == nil && ctx.Err() == nil}
				stopElecting()
			},
			// The elector calls this once it stops, leader or not, after
			// releasing a Lease it held; the term's work winds down in
			// OnStartedLeading, and runAsLeader waits for it.
			OnStoppedLeading: func() {
				log.V(1).Info("Left the leader election", "lease", le.LeaseName, "led", leading.Load())
			},
			OnNewLeader: func(identity string) {
				if identity != le.Identity {
					log.Info("Another replica leads; standing by", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	elector.Run(electCtx)
	select {
	case <-started:
	default:
		return nil // stopped before ever leading
	}
	out := <-ended
	if ctx.Err() == nil && !out.finished && out.err == nil {
		return errLostLease
	}
	return out.err
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
