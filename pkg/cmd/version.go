package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-prefect/kubectl-prefect/internal/version"
)

// VersionOptions are the options of `kubectl prefect version`.
type VersionOptions struct {
	configFlags *genericclioptions.ConfigFlags
	Output      string
	Client      bool

	info versionInfo
	genericiooptions.IOStreams
}

type clientVersion struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

type agentVersion struct {
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Image      string `json:"image"`
	Replicas   int32  `json:"replicas"`
}

type versionInfo struct {
	Client clientVersion  `json:"clientVersion"`
	Agents []agentVersion `json:"agents,omitempty"`
}

// NewCmdVersion is `kubectl prefect version`.
func NewCmdVersion(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &VersionOptions{configFlags: configFlags, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and, with a cluster reachable, the installed agent's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Complete(cmd.Context())
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run()
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "One of json or yaml")
	cmd.Flags().BoolVar(&o.Client, "client", false, "Only the plugin's version; do not contact the cluster")
	return cmd
}

// Complete gathers the versions; a cluster that cannot be reached is skipped.
func (o *VersionOptions) Complete(ctx context.Context) {
	v, commit := version.Version, version.Commit
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	o.info.Client = clientVersion{Version: v, Commit: commit, BuildDate: version.Date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if o.Client {
		return
	}
	o.info.Agents = installedAgents(ctx, o.configFlags)
}

// installedAgents finds agents `agent install` put in the namespace.
func installedAgents(ctx context.Context, configFlags *genericclioptions.ConfigFlags) []agentVersion {
	cfg, err := configFlags.ToRESTConfig()
	if err != nil {
		return nil
	}
	cfg.Timeout = 5 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil
	}
	ns, _, err := configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil
	}
	list, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=kubectl-prefect,app.kubernetes.io/name=prefect-agent"})
	if err != nil {
		return nil
	}
	var out []agentVersion
	for _, d := range list.Items {
		a := agentVersion{Namespace: d.Namespace, Deployment: d.Name, Replicas: d.Status.ReadyReplicas}
		if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
			a.Image = cs[0].Image
		}
		out = append(out, a)
	}
	return out
}

// Validate checks the output format.
func (o *VersionOptions) Validate() error {
	if o.Output != "" && o.Output != "json" && o.Output != "yaml" {
		return fmt.Errorf("-o %q: expected json or yaml", o.Output)
	}
	return nil
}

// Run prints the versions.
func (o *VersionOptions) Run() error {
	switch o.Output {
	case "json":
		raw, err := json.MarshalIndent(o.info, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(o.Out, string(raw))
		return nil
	case "yaml":
		raw, err := yaml.Marshal(o.info)
		if err != nil {
			return err
		}
		fmt.Fprint(o.Out, string(raw))
		return nil
	}
	c := o.info.Client
	fmt.Fprintf(o.Out, "Client Version: %s\nCommit: %s\nBuild Date: %s\nGo Version: %s\nPlatform: %s\n", c.Version, c.Commit, c.BuildDate, c.GoVersion, c.Platform)
	for _, a := range o.info.Agents {
		fmt.Fprintf(o.Out, "Agent: %s in deployment %s/%s (%d ready)\n", a.Image, a.Namespace, a.Deployment, a.Replicas)
	}
	return nil
}
