// Package logs holds `kubectl prefect logs`: a flow run's Prefect log and its
// flow containers' output, interleaved by time and marked by source.
package logs

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefectaccess"
)

// Options are the options of `kubectl prefect logs`.
type Options struct {
	configFlags *genericclioptions.ConfigFlags
	Prefect     prefectaccess.Flags

	Follow      bool
	Previous    bool
	Since       time.Duration
	Tail        int64
	Container   string
	Attempt     int
	AllAttempts bool
	PrefectOnly bool
	PodOnly     bool
	// PollInterval is how often -f asks Prefect for new lines.
	PollInterval time.Duration

	target    string
	namespace string
	client    kubernetes.Interface
	access    *prefectaccess.Access
	now       func() time.Time
	genericiooptions.IOStreams
}

// NewOptions returns the options with their defaults.
func NewOptions(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *Options {
	return &Options{configFlags: configFlags, Tail: -1, PollInterval: 2 * time.Second, IOStreams: streams, now: time.Now}
}

// NewCmdLogs is `kubectl prefect logs`.
func NewCmdLogs(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdLogs(NewOptions(configFlags, streams))
}

func newCmdLogs(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs RUN|JOB",
		Short: "Print a flow run's Prefect log and its flow container's output, interleaved by time",
		Long: `Print a flow run's Prefect log lines and its flow container's output,
interleaved by time, each line marked by its source: [prefect] or
[pod/POD/CONTAINER]. RUN is a flow run's name or id, or one of its Jobs.

By default the newest attempt (the run's newest Job) is shown; --attempt N
picks an older one and --all-attempts shows every one. After the Job is
gone, the run's Prefect log is still there, with what the agent saved of a
failed container's output.`,
		Example: `  # Everything about one run, by name
  kubectl prefect logs brave-fox

  # Follow a running flow until the run finishes
  kubectl prefect logs -f brave-fox

  # Only the container's output of the first attempt, from the crashed container
  kubectl prefect logs etl-5f2c1a9b --pod-only --attempt 1 --previous`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.target = args[0]
			if err := o.Complete(cmd); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "Follow the Prefect log and the container's output until the run finishes")
	cmd.Flags().BoolVarP(&o.Previous, "previous", "p", false, "The output of the container's previous instance, if it restarted")
	cmd.Flags().DurationVar(&o.Since, "since", 0, "Only lines newer than this, e.g. 5s, 2m or 3h")
	cmd.Flags().Int64Var(&o.Tail, "tail", o.Tail, "Lines of the most recent output to show, over both sources (-1: all)")
	cmd.Flags().StringVarP(&o.Container, "container", "c", "", "Container whose output to show (default: the flow's container)")
	cmd.Flags().IntVar(&o.Attempt, "attempt", 0, "Which attempt (the run's Jobs, oldest first, from 1) to show (default: the newest)")
	cmd.Flags().BoolVar(&o.AllAttempts, "all-attempts", false, "Show every attempt's output")
	cmd.Flags().BoolVar(&o.PrefectOnly, "prefect-only", false, "Only the run's Prefect log")
	cmd.Flags().BoolVar(&o.PodOnly, "pod-only", false, "Only the container's output")
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
	if o.client == nil {
		cfg, err := o.configFlags.ToRESTConfig()
		if err != nil {
			return err
		}
		if o.client, err = kubernetes.NewForConfig(cfg); err != nil {
			return err
		}
	}
	o.access, err = o.Prefect.Resolve(cmd.Context(), prefectaccess.InCluster{Client: o.client, Namespace: ns})
	return err
}

// Validate checks the flags that exclude each other.
func (o *Options) Validate() error {
	switch {
	case o.PrefectOnly && o.PodOnly:
		return fmt.Errorf("--prefect-only and --pod-only exclude each other: use one")
	case o.Attempt != 0 && o.AllAttempts:
		return fmt.Errorf("--attempt and --all-attempts exclude each other: use one")
	case o.Attempt < 0:
		return fmt.Errorf("--attempt %d: expected 1 or more", o.Attempt)
	case o.Since < 0:
		return fmt.Errorf("--since %s: expected a positive duration such as 5m", o.Since)
	case o.Tail < -1:
		return fmt.Errorf("--tail %d: expected -1 (all) or more", o.Tail)
	}
	return nil
}

// line is one line of either source.
type line struct {
	time    time.Time
	source  string
	text    string
	prefect bool
}

func (l line) String() string {
	return l.time.UTC().Format(time.RFC3339Nano) + " " + l.source + " " + l.text
}

// Run prints the lines, then with -f follows both sources.
func (o *Options) Run(ctx context.Context) error {
	if !o.PodOnly || o.Follow {
		if err := o.access.Connect(ctx); err != nil {
			return err
		}
	}
	runID, err := o.resolveRun(ctx)
	if err != nil {
		return err
	}
	jobs, err := o.attempts(ctx, runID)
	if err != nil {
		return err
	}
	pods, err := o.pods(ctx, runID, jobs)
	if err != nil {
		return err
	}
	var since time.Time
	if o.Since > 0 {
		since = o.now().Add(-o.Since)
	}
	var lines []line
	state := ""
	if !o.PodOnly {
		got, st, err := o.prefectLines(ctx, runID, since, nil)
		if err != nil {
			return err
		}
		lines, state = append(lines, got...), st
	}
	if !o.PrefectOnly {
		for _, p := range pods {
			got, err := o.podLines(ctx, p, since)
			if err != nil {
				fmt.Fprintf(o.ErrOut, "Warning: %v\n", err)
				continue
			}
			lines = append(lines, got...)
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].time.Before(lines[j].time) })
	if o.Tail >= 0 && int64(len(lines)) > o.Tail {
		lines = lines[int64(len(lines))-o.Tail:]
	}
	for _, l := range lines {
		fmt.Fprintln(o.Out, l)
	}
	if !o.Follow {
		return nil
	}
	return o.follow(ctx, runID, since, pods, lines, state)
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// resolveRun turns RUN|JOB into a flow run id: a Job of the agent's here, a
// run id, or a run name Prefect knows (one only).
func (o *Options) resolveRun(ctx context.Context) (string, error) {
	job, err := o.client.BatchV1().Jobs(o.namespace).Get(ctx, o.target, metav1.GetOptions{})
	switch {
	case err == nil:
		if id := job.Labels[manifest.LabelFlowRunID]; id != "" {
			return id, nil
		}
		return "", fmt.Errorf("job %s in namespace %s is not a flow run's Job (no %s label)", o.target, o.namespace, manifest.LabelFlowRunID)
	case !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err):
		return "", err
	}
	if uuidPattern.MatchString(o.target) {
		return strings.ToLower(o.target), nil
	}
	if o.PodOnly && !o.Follow {
		return "", fmt.Errorf("no Job %s in namespace %s: with --pod-only give a Job or a run id", o.target, o.namespace)
	}
	ids, err := o.access.Client.RunsNamed(ctx, o.target)
	if err != nil {
		return "", fmt.Errorf("looking up flow run %q in Prefect: %w", o.target, err)
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no flow run named %q in Prefect and no Job %s in namespace %s", o.target, o.target, o.namespace)
	case 1:
		return ids[0], nil
	}
	sort.Strings(ids)
	return "", fmt.Errorf("%d flow runs are named %q (%s): give the run id instead", len(ids), o.target, strings.Join(ids, ", "))
}

// attempts lists the run's Jobs here, oldest first, and keeps the attempts asked for.
func (o *Options) attempts(ctx context.Context, runID string) ([]batchv1.Job, error) {
	list, err := o.client.BatchV1().Jobs(o.namespace).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + runID})
	if err != nil {
		return nil, err
	}
	jobs := list.Items
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].CreationTimestamp.Before(&jobs[j].CreationTimestamp) })
	switch {
	case o.AllAttempts || len(jobs) == 0:
		if o.Attempt > 0 {
			return nil, fmt.Errorf("--attempt %d: the run has no Job in namespace %s any more", o.Attempt, o.namespace)
		}
		return jobs, nil
	case o.Attempt > len(jobs):
		return nil, fmt.Errorf("--attempt %d: the run has %d attempts (Jobs) in namespace %s", o.Attempt, len(jobs), o.namespace)
	case o.Attempt > 0:
		return jobs[o.Attempt-1 : o.Attempt], nil
	}
	return jobs[len(jobs)-1:], nil
}

// pods lists the pods of the chosen Jobs, oldest first.
func (o *Options) pods(ctx context.Context, runID string, jobs []batchv1.Job) ([]corev1.Pod, error) {
	if len(jobs) == 0 || o.PrefectOnly {
		return nil, nil
	}
	uids := map[string]bool{}
	for _, j := range jobs {
		uids[string(j.UID)] = true
	}
	list, err := o.client.CoreV1().Pods(o.namespace).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelFlowRunID + "=" + runID})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		for _, ref := range p.OwnerReferences {
			if ref.Kind == "Job" && uids[string(ref.UID)] {
				out = append(out, p)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreationTimestamp.Before(&out[j].CreationTimestamp) })
	return out, nil
}

// prefectPage is how many log lines one Prefect request reads.
const prefectPage = 500

// prefectLines reads the run's log lines at or after since, skipping those
// already seen, a page per request; it returns the run's state too.
func (o *Options) prefectLines(ctx context.Context, runID string, since time.Time, seen map[string]bool) ([]line, string, error) {
	var out []line
	state := ""
	for {
		page, exists, err := o.access.Client.RunLogs(ctx, runID, since, prefectPage)
		if err != nil {
			return nil, "", fmt.Errorf("reading the log of flow run %s from Prefect: %w", runID, err)
		}
		if !exists {
			return nil, "", fmt.Errorf("flow run %s does not exist in Prefect at %s", runID, o.access.API)
		}
		state = page.State
		fresh := 0
		for _, l := range page.Lines {
			k := prefectKey(l)
			if seen != nil && seen[k] {
				continue
			}
			if seen != nil {
				seen[k] = true
			}
			fresh++
			out = append(out, line{time: l.Time, source: "[prefect]", text: fmt.Sprintf("%s %s: %s", l.Level, l.Name, l.Message), prefect: true})
		}
		if len(page.Lines) < prefectPage || fresh == 0 {
			return out, state, nil
		}
		if seen == nil {
			seen = map[string]bool{}
			for _, l := range page.Lines {
				seen[prefectKey(l)] = true
			}
		}
		since = page.Lines[len(page.Lines)-1].Time
	}
}

func prefectKey(l prefect.RunLogLine) string {
	return l.Time.UTC().Format(time.RFC3339Nano) + "\x00" + l.Name + "\x00" + l.Level + "\x00" + l.Message
}

// container is the container whose output to show: -c, else the flow's.
func (o *Options) container(p *corev1.Pod) string {
	if o.Container != "" {
		return o.Container
	}
	if i := manifest.FlowContainerIndex(p.Spec.Containers); i >= 0 {
		return p.Spec.Containers[i].Name
	}
	return manifest.FlowContainer
}

// podLines reads a pod's container output with the kubelet's timestamps.
func (o *Options) podLines(ctx context.Context, p corev1.Pod, since time.Time) ([]line, error) {
	opts := o.podLogOptions(p, since, false)
	raw, err := o.client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, opts).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the output of container %q of pod %s: %v", opts.Container, p.Name, err)
	}
	source := "[pod/" + p.Name + "/" + opts.Container + "]"
	var out []line
	for _, text := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
		if text == "" {
			continue
		}
		out = append(out, parsePodLine(source, text, p.CreationTimestamp.Time))
	}
	return out, nil
}

func (o *Options) podLogOptions(p corev1.Pod, since time.Time, follow bool) *corev1.PodLogOptions {
	opts := &corev1.PodLogOptions{Container: o.container(&p), Timestamps: true, Previous: o.Previous, Follow: follow}
	if !since.IsZero() {
		t := metav1.NewTime(since)
		opts.SinceTime = &t
	}
	if o.Tail >= 0 && !follow {
		opts.TailLines = &o.Tail
	}
	return opts
}

// parsePodLine splits the kubelet's RFC 3339 timestamp from the text; a line
// without one takes the fallback time.
func parsePodLine(source, text string, fallback time.Time) line {
	if ts, rest, ok := strings.Cut(text, " "); ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return line{time: t, source: source, text: rest}
		}
	}
	return line{time: fallback, source: source, text: text}
}
