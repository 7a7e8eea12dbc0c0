package runs

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd/printing"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// PrefectInFlight is how many Prefect requests one listing has in flight.
const PrefectInFlight = 4

// fetched is what one listing reads: the Jobs, their pods by Job, the runs
// of the Jobs by id, and the runs without a Job here that Prefect shows
// Submitted or Running by the agent.
type fetched struct {
	jobs  []batchv1.Job
	pods  map[string][]*corev1.Pod
	runs  map[string]prefect.RunOverview
	extra []prefect.RunOverview
}

// fetch reads the Jobs, the pods and the runs at once: the pods and the
// agent's runs (none when agent is empty) are read beside the Jobs, and each
// full page of the other run ids goes to Prefect as soon as the Jobs naming
// them are read, so the listing takes about as long as its slowest source
// rather than their sum.
func (o *Options) fetch(ctx context.Context, ns, agent string) (*fetched, error) {
	g, gctx := errgroup.WithContext(ctx)
	out := &fetched{runs: map[string]prefect.RunOverview{}}
	g.Go(func() error {
		// All the agents' pods, joined to the selected Jobs by name: the
		// pods of a Job the agent adopted (labelled after its pods were
		// made) carry no identity label.
		pods, err := printing.PodsByJob(gctx, o.client, ns, o.ChunkSize)
		out.pods = pods
		return err
	})

	// The agent's own runs (Submitted or Running by it) are asked for
	// first, beside the listings: in a steady state they are most of the
	// Jobs' runs, so the pages of Job run ids then carry only the others
	// (finished runs whose Jobs are kept), and no run comes twice.
	var mu sync.Mutex
	answered := map[string]prefect.RunOverview{}
	keep := func(got []prefect.RunOverview) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range got {
			answered[r.ID] = r
		}
	}
	agentDone := make(chan struct{})
	if agent == "" {
		close(agentDone)
	} else {
		g.Go(func() error {
			defer close(agentDone)
			got, err := o.access.Client.RunsOverview(gctx, nil, agent, o.access.AgentLabels)
			if err != nil {
				return fmt.Errorf("reading the flow runs from Prefect at %s: %w", o.access.API, err)
			}
			keep(got)
			return nil
		})
	}
	inFlight := make(chan struct{}, PrefectInFlight)
	ask := func(ids []string) {
		g.Go(func() error {
			select {
			case inFlight <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			defer func() { <-inFlight }()
			got, err := o.access.Client.RunsOverview(gctx, ids, "", nil)
			if err != nil {
				return fmt.Errorf("reading the flow runs from Prefect at %s: %w", o.access.API, err)
			}
			keep(got)
			return nil
		})
	}
	// unanswered drops the ids the agent's runs already answered.
	unanswered := func(ids []string) []string {
		mu.Lock()
		defer mu.Unlock()
		out := ids[:0]
		for _, id := range ids {
			if _, ok := answered[id]; !ok {
				out = append(out, id)
			}
		}
		return out
	}

	seen := map[string]bool{}
	g.Go(func() error {
		var pending []string
		// send asks for the full pages of pending ids (all of them when
		// last), once the agent's runs are known.
		send := func(last bool) error {
			if last {
				select {
				case <-agentDone:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			select {
			case <-agentDone:
			default:
				return nil
			}
			pending = unanswered(pending)
			for len(pending) >= RunsPage || (last && len(pending) > 0) {
				n := min(RunsPage, len(pending))
				ask(pending[:n:n])
				pending = pending[n:]
			}
			return nil
		}
		opts := metav1.ListOptions{LabelSelector: o.selector, Limit: o.ChunkSize}
		for {
			page, err := o.client.BatchV1().Jobs(ns).List(gctx, opts)
			if err != nil {
				return err
			}
			out.jobs = append(out.jobs, page.Items...)
			for i := range page.Items {
				if id := page.Items[i].Labels[manifest.LabelFlowRunID]; id != "" && !seen[id] {
					seen[id] = true
					pending = append(pending, id)
				}
			}
			if page.Continue == "" {
				return send(true)
			}
			if err := send(false); err != nil {
				return err
			}
			opts.Continue = page.Continue
		}
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, r := range answered {
		if seen[r.ID] {
			out.runs[r.ID] = r
		} else {
			out.extra = append(out.extra, r)
		}
	}
	return out, nil
}
