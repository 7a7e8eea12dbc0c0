package agent

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// RenderOptions are the options of `kubectl prefect agent render`.
type RenderOptions struct {
	configFlags *genericclioptions.ConfigFlags
	Settings    agentcli.SettingsFlags
	Templates   agentcli.TemplateFlags
	PrintFlags  *genericclioptions.PrintFlags

	RunConfigPath string
	StoragePath   string
	FlowRunID     string
	FlowID        string
	Version       int
	CoreVersion   string
	MaxRunTime    time.Duration

	run     manifest.FlowRun
	printer printers.ResourcePrinter
	genericiooptions.IOStreams
}

// NewCmdRender is `kubectl prefect agent render`.
func NewCmdRender(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &RenderOptions{
		configFlags: configFlags,
		PrintFlags:  genericclioptions.NewPrintFlags("").WithDefaultOutput("yaml"),
		IOStreams:   streams,
	}
	cmd := &cobra.Command{
		Use:   "render --run-config FILE",
		Short: "Print the Job the agent would create for a run config, without a cluster or an API",
		Example: `  # The Job for a KubernetesRun, with the agent's template and labels
  kubectl prefect agent render --run-config run-config.json --job-template job.yaml -l k8s -n flows`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd)
		},
	}
	o.Settings.AddFlags(cmd.Flags())
	o.Templates.AddFlags(cmd.Flags())
	o.PrintFlags.AddFlags(cmd)
	cmd.Flags().StringVar(&o.RunConfigPath, "run-config", "", "JSON file with the flow run's run config, as stored in Prefect (- for stdin)")
	cmd.Flags().StringVar(&o.StoragePath, "storage", "", "JSON file with the flow's storage (a Docker storage sets the image)")
	cmd.Flags().StringVar(&o.FlowRunID, "flow-run-id", "00000000-0000-0000-0000-000000000000", "Flow run id to render for")
	cmd.Flags().StringVar(&o.FlowID, "flow-id", "00000000-0000-0000-0000-000000000000", "Flow id to render for")
	cmd.Flags().IntVar(&o.Version, "flow-run-version", 1, "Flow run version being submitted")
	cmd.Flags().StringVar(&o.CoreVersion, "core-version", prefect.CoreVersion, "Prefect core version the flow was registered with")
	cmd.Flags().DurationVar(&o.MaxRunTime, "max-run-time", 0, "The agent's --max-run-time: the Job's activeDeadlineSeconds unless the template sets one")
	return cmd
}

// Complete reads the run config and storage files.
func (o *RenderOptions) Complete(cmd *cobra.Command) error {
	if err := o.Settings.Complete(cmd.Flags()); err != nil {
		return err
	}
	if err := o.Templates.Complete(cmd.Flags(), o.Settings.JobTemplate); err != nil {
		return err
	}
	o.run = manifest.FlowRun{ID: o.FlowRunID, FlowID: o.FlowID, Version: o.Version, CoreVersion: o.CoreVersion}
	if o.RunConfigPath != "" {
		data, err := readInput(o.RunConfigPath, o.In)
		if err != nil {
			return fmt.Errorf("--run-config: %w", err)
		}
		o.run.RunConfig = data
	}
	if o.StoragePath != "" {
		data, err := os.ReadFile(o.StoragePath)
		if err != nil {
			return fmt.Errorf("--storage: %w", err)
		}
		o.run.Storage = data
	}
	printer, err := o.PrintFlags.ToPrinter()
	if err != nil {
		return err
	}
	o.printer = printer
	return nil
}

// Validate checks the agent settings.
func (o *RenderOptions) Validate() error {
	if o.RunConfigPath == "" {
		return fmt.Errorf("--run-config is required: a JSON file holding the flow run's run config")
	}
	if err := o.Settings.Validate(); err != nil {
		return err
	}
	if o.MaxRunTime < 0 {
		return fmt.Errorf("--max-run-time %s: expected 0 (no limit) or a positive duration such as 6h", o.MaxRunTime)
	}
	return o.Templates.Validate()
}

// Run builds and prints the Job; what lenient parsing dropped from a
// template is printed as warnings on stderr.
func (o *RenderOptions) Run(cmd *cobra.Command) error {
	settings := o.Settings.ToSettings(renderNamespace(o.configFlags))
	settings.MaxRunTime = o.MaxRunTime
	if rc, err := manifest.ParseRunConfig(o.run.RunConfig); err == nil {
		o.run.Labels = rc.Labels // Server's run labels when none are given at creation
	}
	if settings.TenantID == "" && (settings.APIKey != "" || settings.APIKeySecret != "") {
		settings.TenantID = "<tenant of the API key>"
	}
	warnings, err := o.Templates.Apply(cmd.Context(), &settings)
	if err != nil {
		return err
	}
	job, runWarnings, err := manifest.BuildJob(cmd.Context(), settings, o.run)
	if err != nil {
		return err
	}
	for _, w := range append(warnings, runWarnings...) {
		fmt.Fprintf(o.ErrOut, "Warning: %s\n", w)
	}
	if settings.APIKey != "" && settings.APIKeySecret == "" {
		fmt.Fprintln(o.ErrOut, "Warning: the Job carries the API key as a plain value (PREFECT__CLOUD__API_KEY); with --key-secret-name it reads the key from a Secret instead")
	}
	return o.printer.PrintObj(job, o.Out)
}

// renderNamespace is -n, else NAMESPACE, else the current kubeconfig
// context's namespace when the kubeconfig loads, else default. Render reads
// no cluster: a kubeconfig whose credentials are gone does not matter.
func renderNamespace(configFlags *genericclioptions.ConfigFlags) string {
	if configFlags.Namespace != nil && *configFlags.Namespace != "" {
		return *configFlags.Namespace
	}
	if ns := os.Getenv("NAMESPACE"); ns != "" {
		return ns
	}
	raw, err := configFlags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return "default"
	}
	current := raw.CurrentContext
	if configFlags.Context != nil && *configFlags.Context != "" {
		current = *configFlags.Context
	}
	if c, ok := raw.Contexts[current]; ok && c.Namespace != "" {
		return c.Namespace
	}
	return "default"
}

func readInput(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(path)
}
