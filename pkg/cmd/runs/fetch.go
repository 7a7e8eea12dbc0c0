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

// fetch reads the Jobs, the pods and the runs at once: the pods are listed
// beside the Jobs, and each full page of run ids goes to Prefect as soon as
// the Jobs naming them are read, so the listing takes about as long as its
// slowest source rather than their sum. The first Prefect request also asks
// for agent's runs (none when agent is empty).
func (o *Options) fetch(ctx context.Context, ns, agent string) (*fetched, error) {
	g, gctx := errgroup.WithContext(ctx)
	out := &fetched{runs: map[string]prefect.RunOverview{}}
	g.Go(func() error {
		pods, err := printing.PodsByJobSelected(gctx, o.client, ns, manifest.LabelIdentifier+","+manifest.LabelAgent+"="+o.access.AgentIdentity(), o.ChunkSize)
		out.pods = pods
		return err
	})

	var mu sync.Mutex
	var answers []prefect.RunOverview
	inFlight := make(chan struct{}, PrefectInFlight)
	ask := func(ids []string, agent string) {
		g.Go(func() error {
			select {
			case inFlight <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			defer func() { <-inFlight }()
			got, err := o.access.Client.RunsOverview(gctx, ids, agent, o.access.AgentLabels)
			if err != nil {
				return fmt.Errorf("reading the flow runs from Prefect at %s: %w", o.access.API, err)
			}
			mu.Lock()
			answers = append(answers, got...)
			mu.Unlock()
			return nil
		})
	}

	seen := map[string]bool{}
	g.Go(func() error {
		var pending []string
		asked := false
		send := func(ids []string) {
			ask(ids, agent)
			agent, asked = "", true
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
			for len(pending) >= RunsPage {
				send(pending[:RunsPage:RunsPage])
				pending = pending[RunsPage:]
			}
			if page.Continue == "" {
				break
			}
			opts.Continue = page.Continue
		}
		if len(pending) > 0 || !asked {
			send(pending)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, r := range answers {
		if seen[r.ID] {
			out.runs[r.ID] = r
		} else {
			out.extra = append(out.extra, r)
		}
	}
	return out, nil
}
