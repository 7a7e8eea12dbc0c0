// Package runs holds `kubectl prefect runs`: one row per flow run of the
// namespace's agent, joining Prefect's state with the run's Jobs and pods,
// and naming where the two disagree (DRIFT).
package runs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd/printing"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefectaccess"
)

// RunsPage is how many run ids go into one Prefect request.
const RunsPage = 200

// Options are the options of `kubectl prefect runs`.
type Options struct {
	configFlags *genericclioptions.ConfigFlags
	PrintFlags  *genericclioptions.PrintFlags
	Prefect     prefectaccess.Flags

	AllNamespaces bool
	Selector      string
	Flow          string
	States        []string
	NoHeaders     bool
	SortBy        string
	Watch         bool
	WatchInterval time.Duration
	ChunkSize     int64

	// Now is the clock for AGE (time.Now when nil).
	Now func() time.Time

	args      []string
	namespace string
	selector  string
	output    string
	client    kubernetes.Interface
	access    *prefectaccess.Access
	genericiooptions.IOStreams
}

// NewOptions returns the options with their defaults.
func NewOptions(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *Options {
	o := &Options{configFlags: configFlags, PrintFlags: genericclioptions.NewPrintFlags(""), ChunkSize: 500, WatchInterval: 5 * time.Second, IOStreams: streams}
	o.Prefect.WithLabels = true
	return o
}

// NewCmdRuns is `kubectl prefect runs`.
func NewCmdRuns(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdRuns(NewOptions(configFlags, streams))
}

func newCmdRuns(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runs [RUN...]",
		Short: "List the agent's flow runs: Prefect's state beside their Jobs and pods, and where the two disagree",
		Long: `List the flow runs of the namespace's agent: those with Jobs here (the Jobs
labelled with the agent's identity, prefect.io/agent: its name and labels),
and those Prefect shows Submitted or Running by the agent without one (their
latest Submitted mark names this namespace's agent). Each row joins
the run's Prefect state with its newest Job and pod; DRIFT names where they
disagree:

  RunningWithoutPod     Prefect shows Running, but no pod of the run runs
  SubmittedWithoutJob   Prefect shows Submitted by this agent, and no Job exists
  FinishedPodRunning    the run finished in Prefect while its pod still runs
  JobFailedRunRunning   the run's Job failed while Prefect shows it Running

The Prefect connection comes from --api/--key-file/--backend or the agent's
1.x environment variables, else from the agent installed in the namespace.`,
		Example: `  # The runs of the agent in the current namespace
  kubectl prefect runs

  # Only those that disagree with Prefect, across namespaces
  kubectl prefect runs -A -o wide | grep -v '<none>  '

  # The Running runs of one flow, as YAML
  kubectl prefect runs --flow etl --state Running -o yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.args = args
			if err := o.Complete(cmd); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.PrintFlags.AddFlags(cmd)
	cmd.Flags().Lookup("output").Usage = "Output format: wide, json, yaml, name, jsonpath=..., go-template=..., custom-columns=... (default: a table)"
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "If present, list the runs across all namespaces. Namespace in current context is ignored even if specified with --namespace.")
	cmd.Flags().StringVarP(&o.Selector, "selector", "l", "", "Label selector on the runs' Jobs, e.g. -l team=data")
	cmd.Flags().StringVar(&o.Flow, "flow", "", "Only the runs of this flow (its name)")
	cmd.Flags().StringSliceVar(&o.States, "state", nil, "Only the runs in these Prefect states, e.g. --state Running,Submitted")
	cmd.Flags().BoolVar(&o.NoHeaders, "no-headers", false, "Do not print headers in table output")
	cmd.Flags().StringVar(&o.SortBy, "sort-by", "", "Sort by a JSONPath expression on the runs' objects (see -o yaml), e.g. '{.status.stateTimestamp}'")
	cmd.Flags().BoolVarP(&o.Watch, "watch", "w", false, "After listing, print the runs that change, every --watch-interval")
	cmd.Flags().DurationVar(&o.WatchInterval, "watch-interval", o.WatchInterval, "How often -w looks again (one Kubernetes list and one Prefect request per page of runs each time)")
	cmd.Flags().Int64Var(&o.ChunkSize, "chunk-size", o.ChunkSize, "Return large lists in chunks rather than all at once; 0 disables chunking")
	o.Prefect.AddFlags(cmd.Flags())
	return cmd
}

// Complete resolves the namespace, the clients and the Prefect connection.
func (o *Options) Complete(cmd *cobra.Command) error {
	ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return err
	}
	o.namespace = ns
	if o.PrintFlags.OutputFormat != nil {
		o.output = *o.PrintFlags.OutputFormat
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return err
	}
	if o.client, err = printing.ListClient(cfg); err != nil {
		return err
	}
	if o.access, err = o.Prefect.Resolve(cmd.Context(), prefectaccess.InCluster{Client: o.client, Namespace: ns}); err != nil {
		return err
	}
	// The agent's Jobs (and their pods) carry its identity.
	sel := []string{manifest.LabelIdentifier, manifest.LabelAgent + "=" + o.access.AgentIdentity()}
	if o.Selector != "" {
		sel = append(sel, o.Selector)
	}
	o.selector = strings.Join(sel, ",")
	return nil
}

// Validate checks the selector, the states and the output format.
func (o *Options) Validate() error {
	if _, err := labels.Parse(o.selector); err != nil {
		return fmt.Errorf("-l/--selector %q: %v", o.Selector, err)
	}
	if o.ChunkSize < 0 {
		return fmt.Errorf("--chunk-size %d: expected 0 or more", o.ChunkSize)
	}
	if o.Watch && o.WatchInterval < time.Second {
		return fmt.Errorf("--watch-interval %s: expected 1s or more", o.WatchInterval)
	}
	for _, s := range o.States {
		if s == "" || strings.ToUpper(s[:1]) != s[:1] {
			return fmt.Errorf("--state %q: expected Prefect state names such as Running, Submitted, Failed", s)
		}
	}
	switch {
	case o.output == "" || o.output == "wide" || strings.HasPrefix(o.output, "custom-columns="):
	default:
		if _, err := o.PrintFlags.ToPrinter(); err != nil {
			return fmt.Errorf("-o %s: %v; also allowed: wide, custom-columns=", o.output, err)
		}
	}
	if o.SortBy != "" {
		if _, err := printing.ParseJSONPath(o.SortBy); err != nil {
			return fmt.Errorf("--sort-by %q: %v", o.SortBy, err)
		}
	}
	return nil
}

// Run lists the runs, and with -w prints those that change.
func (o *Options) Run(ctx context.Context) error {
	if err := o.access.Connect(ctx); err != nil {
		return err
	}
	rows, err := o.list(ctx)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		printing.NoResources(o.ErrOut, o.AllNamespaces, o.namespace)
	} else if err := o.print(rows, o.NoHeaders); err != nil {
		return err
	}
	if !o.Watch {
		return nil
	}
	return o.watch(ctx, rows, len(rows) > 0 || o.NoHeaders)
}

// list reads the Jobs, their pods and the runs' states (one Prefect
// request per page of runs), and keeps the rows the filters select.
func (o *Options) list(ctx context.Context) ([]*row, error) {
	ns := o.namespace
	if o.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	agent := o.access.AgentName
	if o.Selector != "" {
		agent = "" // runs without Jobs have no labels to select on
	}
	got, err := o.fetch(ctx, ns, agent)
	if err != nil {
		return nil, err
	}
	extraNS := o.namespace
	if o.AllNamespaces {
		extraNS = ""
	}
	all := buildRows(got.jobs, got.pods, got.runs, got.extra, extraNS)
	var out []*row
	for _, r := range all {
		if o.selected(r) {
			out = append(out, r)
		}
	}
	if o.SortBy != "" {
		objs := make([]map[string]any, len(out))
		for i, r := range out {
			objs[i] = r.object()
		}
		idx, err := printing.SortOrder(objs, o.SortBy)
		if err != nil {
			return nil, err
		}
		sorted := make([]*row, len(out))
		for i, j := range idx {
			sorted[i] = out[j]
		}
		out = sorted
	}
	return out, nil
}

// selected applies the RUN arguments, --flow and --state.
func (o *Options) selected(r *row) bool {
	if o.Flow != "" && r.Flow != o.Flow {
		return false
	}
	if len(o.States) > 0 {
		match := false
		for _, s := range o.States {
			match = match || s == r.State
		}
		if !match {
			return false
		}
	}
	if len(o.args) == 0 {
		return true
	}
	for _, a := range o.args {
		if a == r.Name || a == r.RunID {
			return true
		}
	}
	return false
}

// print writes the rows in the chosen output format.
func (o *Options) print(rows []*row, noHeaders bool) error {
	switch {
	case o.output == "" || o.output == "wide":
		return printing.Table(o.Out, toTable(rows, o.Now()), o.output == "wide", o.AllNamespaces, noHeaders)
	}
	objs := make([]map[string]any, len(rows))
	for i, r := range rows {
		objs[i] = r.object()
	}
	if spec, ok := strings.CutPrefix(o.output, "custom-columns="); ok {
		return printing.CustomColumns(o.Out, spec, objs, noHeaders)
	}
	printer, err := o.PrintFlags.ToPrinter()
	if err != nil {
		return err
	}
	return printer.PrintObj(printing.List(objs), o.Out)
}

// watch looks again every WatchInterval and prints the rows whose cells
// changed (or that appeared), until ctx ends.
func (o *Options) watch(ctx context.Context, rows []*row, headersShown bool) error {
	last := map[string]string{}
	for _, r := range rows {
		last[r.key()] = fmt.Sprint(r.cells(time.Time{}))
	}
	t := time.NewTicker(o.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rows, err := o.list(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var changed []*row
		for _, r := range rows {
			cells := fmt.Sprint(r.cells(time.Time{}))
			if last[r.key()] != cells {
				last[r.key()] = cells
				changed = append(changed, r)
			}
		}
		if len(changed) == 0 {
			continue
		}
		if err := o.print(changed, o.NoHeaders || headersShown); err != nil {
			return err
		}
		headersShown = true
	}
}
