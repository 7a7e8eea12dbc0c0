// Package jobs holds `kubectl prefect jobs`, which lists the Jobs the agent launched.
package jobs

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd/printing"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// Options are the options of `kubectl prefect jobs`.
type Options struct {
	configFlags *genericclioptions.ConfigFlags
	PrintFlags  *genericclioptions.PrintFlags

	AllNamespaces bool
	Selector      string
	Flow          string
	FlowRun       string
	NoHeaders     bool
	SortBy        string
	Watch         bool
	ChunkSize     int64

	// Now is the clock for AGE and DURATION (time.Now when nil).
	Now func() time.Time

	names     map[string]bool
	namespace string
	selector  string
	output    string
	client    kubernetes.Interface
	genericiooptions.IOStreams
}

// NewOptions returns the options with kubectl's defaults.
func NewOptions(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *Options {
	return &Options{configFlags: configFlags, PrintFlags: genericclioptions.NewPrintFlags(""), ChunkSize: 500, IOStreams: streams}
}

// NewCmdJobs is `kubectl prefect jobs`.
func NewCmdJobs(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdJobs(NewOptions(configFlags, streams))
}

func newCmdJobs(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs [NAME...]",
		Short: "List the Jobs the agent launched for flow runs",
		Example: `  # The agent's Jobs in the current namespace, and everywhere
  kubectl prefect jobs
  kubectl prefect jobs -A -o wide

  # The Job of one flow run, as YAML
  kubectl prefect jobs --flow-run 0b7d2c4e-1111-4a2b-9c3d-5e6f7a8b9c0d -o yaml`,
		ValidArgsFunction: o.completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = map[string]bool{}
			for _, a := range args {
				o.names[a] = true
			}
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
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "If present, list the Jobs across all namespaces. Namespace in current context is ignored even if specified with --namespace.")
	cmd.Flags().StringVarP(&o.Selector, "selector", "l", "", "Label selector to filter on as well, e.g. -l team=data")
	cmd.Flags().StringVar(&o.Flow, "flow", "", "Only the Jobs of flow runs of this flow (its name)")
	cmd.Flags().StringVar(&o.FlowRun, "flow-run", "", "Only the Jobs of this flow run (its id)")
	cmd.Flags().BoolVar(&o.NoHeaders, "no-headers", false, "Do not print headers in table output")
	cmd.Flags().StringVar(&o.SortBy, "sort-by", "", "Sort by a JSONPath expression on the Jobs, e.g. '{.metadata.creationTimestamp}'")
	cmd.Flags().BoolVarP(&o.Watch, "watch", "w", false, "After listing, watch for changes")
	cmd.Flags().Int64Var(&o.ChunkSize, "chunk-size", o.ChunkSize, "Return large lists in chunks rather than all at once; 0 disables chunking")
	return cmd
}

// Complete resolves the namespace, the selector and the client.
func (o *Options) Complete(cmd *cobra.Command) error {
	ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return err
	}
	o.namespace = ns
	if o.AllNamespaces {
		o.namespace = metav1.NamespaceAll
	}
	sel := []string{manifest.LabelIdentifier}
	if o.FlowRun != "" {
		sel = append(sel, manifest.LabelFlowRunID+"="+o.FlowRun)
	}
	if o.Selector != "" {
		sel = append(sel, o.Selector)
	}
	o.selector = strings.Join(sel, ",")
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
	o.client, err = printing.ListClient(cfg)
	return err
}

// Validate checks the selector and the output format.
func (o *Options) Validate() error {
	if _, err := labels.Parse(o.selector); err != nil {
		return fmt.Errorf("-l/--selector %q: %v", o.Selector, err)
	}
	if o.ChunkSize < 0 {
		return fmt.Errorf("--chunk-size %d: expected 0 or more", o.ChunkSize)
	}
	switch {
	case o.output == "" || o.output == "wide" || strings.HasPrefix(o.output, "custom-columns="):
	default:
		if _, err := o.PrintFlags.ToPrinter(); err != nil {
			return fmt.Errorf("-o %s: %v; also allowed: wide, custom-columns=", o.output, err)
		}
	}
	if o.SortBy != "" {
		if _, err := parseJSONPath(o.SortBy); err != nil {
			return fmt.Errorf("--sort-by %q: %v", o.SortBy, err)
		}
	}
	return nil
}

// Run lists (and with -w watches) the agent's Jobs.
func (o *Options) Run(ctx context.Context) error {
	jobs, resourceVersion, err := o.list(ctx)
	if err != nil {
		return err
	}
	if len(jobs) == 0 && !o.Watch {
		o.noResources()
		return nil
	}
	if o.SortBy != "" {
		if err := sortJobs(jobs, o.SortBy); err != nil {
			return err
		}
	}
	if len(jobs) > 0 {
		if err := o.print(ctx, jobs, o.NoHeaders); err != nil {
			return err
		}
		o.printLimits(jobs)
	} else {
		o.noResources()
	}
	if o.Watch {
		return o.watch(ctx, resourceVersion, len(jobs) > 0 || o.NoHeaders)
	}
	return nil
}

// completeNames offers the names of the agent's Jobs in the namespace.
func (o *Options) completeNames(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	o.names = map[string]bool{}
	if err := o.Complete(cmd); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	jobs, _, err := o.list(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	taken := map[string]bool{}
	for _, a := range args {
		taken[a] = true
	}
	var out []string
	for _, j := range jobs {
		if !taken[j.Name] {
			out = append(out, j.Name+"\t"+j.Annotations[manifest.AnnotationFlowName])
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (o *Options) noResources() { printing.NoResources(o.ErrOut, o.AllNamespaces, o.namespace) }

// list pages through the Jobs, then keeps those of --flow.
func (o *Options) list(ctx context.Context) ([]batchv1.Job, string, error) {
	var out []batchv1.Job
	opts := metav1.ListOptions{LabelSelector: o.selector, Limit: o.ChunkSize}
	rv := ""
	for {
		page, err := o.client.BatchV1().Jobs(o.namespace).List(ctx, opts)
		if err != nil {
			return nil, "", err
		}
		for _, j := range page.Items {
			if (o.Flow == "" || j.Annotations[manifest.AnnotationFlowName] == o.Flow) && (len(o.names) == 0 || o.names[j.Name]) {
				out = append(out, j)
			}
		}
		rv = page.ResourceVersion
		if page.Continue == "" {
			return out, rv, nil
		}
		opts.Continue = page.Continue
	}
}

// podsByJob reads the pods of the listed Jobs, for STATUS and NODE.
func (o *Options) podsByJob(ctx context.Context) (map[string][]*corev1.Pod, error) {
	return printing.PodsByJob(ctx, o.client, o.namespace, o.ChunkSize)
}

// needPods tells whether a Job's STATUS depends on its pods: one with pods
// not ready may be waiting on an image or the scheduler.
func needPods(jobs []batchv1.Job) bool {
	for i := range jobs {
		st := jobs[i].Status
		ready := int32(0)
		if st.Ready != nil {
			ready = *st.Ready
		}
		if !manifest.JobFinished(&jobs[i]) && (st.Active > ready || st.Active == 0) {
			return true
		}
	}
	return false
}

// print writes the Jobs in the chosen output format.
func (o *Options) print(ctx context.Context, jobs []batchv1.Job, noHeaders bool) error {
	switch {
	case o.output == "" || o.output == "wide":
		pods := map[string][]*corev1.Pod{}
		if o.output == "wide" || needPods(jobs) {
			var err error
			if pods, err = o.podsByJob(ctx); err != nil {
				return err
			}
		}
		return o.printTable(o.Out, toTable(jobs, pods, o.Now()), noHeaders)
	case strings.HasPrefix(o.output, "custom-columns="):
		return printCustomColumns(o.Out, strings.TrimPrefix(o.output, "custom-columns="), jobs, noHeaders)
	}
	printer, err := o.PrintFlags.ToPrinter()
	if err != nil {
		return err
	}
	list, err := toList(jobs)
	if err != nil {
		return err
	}
	return printer.PrintObj(list, o.Out)
}

func (o *Options) printTable(w io.Writer, table *metav1.Table, noHeaders bool) error {
	return printing.Table(w, table, o.output == "wide", o.AllNamespaces, noHeaders)
}
