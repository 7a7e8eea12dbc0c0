package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-prefect/kubectl-prefect/internal/version"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/install"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// InstallFieldManager owns the fields `agent install` applies.
const InstallFieldManager = "kubectl-prefect"

// InstallOptions are the options of `kubectl prefect agent install`.
type InstallOptions struct {
	configFlags *genericclioptions.ConfigFlags
	Settings    agentcli.SettingsFlags
	Templates   agentcli.TemplateFlags
	Pending     agentcli.PendingFlags
	Guardrails  agentcli.GuardrailFlags
	PrintFlags  *genericclioptions.PrintFlags

	KeyFile        string
	Name           string
	Image          string
	Replicas       int32
	RBAC           bool
	DryRun         string
	ForceConflicts bool

	objects install.Objects
	client  kubernetes.Interface
	genericiooptions.IOStreams
}

// NewCmdInstall is `kubectl prefect agent install`.
func NewCmdInstall(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &InstallOptions{configFlags: configFlags, PrintFlags: genericclioptions.NewPrintFlags(""), IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the agent in the cluster with server-side apply (the API key goes into a Secret)",
		Example: `  # Install with its Role, against Prefect Cloud 1
  kubectl prefect agent install -n prefect --rbac --key-file ./prefect-api-key -l k8s

  # The key from a password manager, through stdin
  pass show prefect/api-key | kubectl prefect agent install -n prefect -k - -l k8s

  # Print the manifest instead, for review or for kubectl apply
  kubectl prefect agent install -n prefect --rbac --backend server --api http://prefect-server:4200 --dry-run=client -o yaml | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.Settings.AddFlags(cmd.Flags())
	o.Templates.AddFlags(cmd.Flags())
	o.Pending.AddFlags(cmd.Flags())
	o.Guardrails.AddFlags(cmd.Flags())
	_ = cmd.Flags().MarkHidden("key-secret-name") // install manages the Secret itself
	cmd.Flags().Lookup("key").Usage = `Prefect API key; "-" reads it from stdin [PREFECT__CLOUD__API_KEY]`
	cmd.Flags().StringVar(&o.KeyFile, "key-file", "", "File holding the Prefect API key, so the key stays out of shell history")
	o.PrintFlags.AddFlags(cmd)
	cmd.Flags().StringVar(&o.Name, "name", "prefect-agent", "Name of the Deployment and of every other object installed")
	cmd.Flags().StringVar(&o.Image, "image", version.AgentImage(), "The agent's own image")
	cmd.Flags().Int32Var(&o.Replicas, "replicas", 1, "Agent replicas; above 1 they elect a leader")
	cmd.Flags().BoolVar(&o.RBAC, "rbac", false, "Also install a Role and RoleBinding granting exactly what the agent uses")
	cmd.Flags().StringVar(&o.DryRun, "dry-run", "none", `"none", "server" (ask the API server, change nothing) or "client" (print the objects, contact nothing)`)
	cmd.Flags().BoolVar(&o.ForceConflicts, "force-conflicts", false, "Take ownership of fields another field manager set")
	return cmd
}

// Complete reads the settings and builds the objects.
func (o *InstallOptions) Complete(cmd *cobra.Command) error {
	if err := o.Settings.Complete(cmd.Flags()); err != nil {
		return err
	}
	if err := o.Templates.Complete(cmd.Flags(), o.Settings.JobTemplate); err != nil {
		return err
	}
	if err := o.Guardrails.Complete(cmd.Flags()); err != nil {
		return err
	}
	if err := o.readKey(cmd); err != nil {
		return err
	}
	ns, err := namespace(o.configFlags)
	if err != nil {
		return err
	}
	in := install.Spec{
		Name: o.Name, Namespace: ns, Image: o.Image, Replicas: o.Replicas, APIKey: o.Settings.Key,
		ImagePullSecrets: o.Settings.ImagePullSecrets, RBAC: o.RBAC,
	}
	if t := o.Settings.JobTemplate; t != "" && !strings.Contains(t, "://") {
		data, err := os.ReadFile(t)
		if err != nil {
			return fmt.Errorf("--job-template: %w", err)
		}
		// Read as the agent will: strictly only with --strict-templates.
		tmpl, err := manifest.DecodeTemplate(data, t, o.Templates.StrictTemplates)
		if err != nil {
			return fmt.Errorf("--job-template: %w", err)
		}
		for _, w := range tmpl.Warnings {
			fmt.Fprintf(o.ErrOut, "Warning: --job-template: %s\n", w)
		}
		in.JobTemplate = data
	}
	in.Args = o.Settings.Args(in.JobTemplate != nil)
	in.Args = append(in.Args, agentcli.ChangedArgs(cmd.Flags(), agentcli.TemplateFlagNames...)...)
	in.Args = append(in.Args, agentcli.ChangedArgs(cmd.Flags(), agentcli.PendingFlagNames...)...)
	in.Args = append(in.Args, agentcli.ChangedArgs(cmd.Flags(), agentcli.GuardrailFlagNames...)...)
	o.objects = install.Build(in)
	if o.DryRun == "client" {
		return nil
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return err
	}
	o.client, err = kubernetes.NewForConfig(cfg)
	return err
}

// readKey reads the key from --key-file, or from stdin with -k -. Neither
// the key nor any part of it appears in an error.
func (o *InstallOptions) readKey(cmd *cobra.Command) error {
	var (
		raw  []byte
		err  error
		from string
	)
	switch {
	case o.KeyFile != "" && cmd.Flags().Changed("key"):
		return fmt.Errorf("--key and --key-file both give the API key: use one")
	case o.KeyFile != "":
		from = "--key-file " + o.KeyFile
		raw, err = os.ReadFile(o.KeyFile)
	case o.Settings.Key == "-":
		from = "-k - (stdin)"
		raw, err = io.ReadAll(io.LimitReader(o.In, 64<<10))
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the API key from %s: %w", from, err)
	}
	key := strings.TrimSpace(string(raw))
	if key == "" {
		return fmt.Errorf("%s: no API key in it", from)
	}
	if strings.ContainsAny(key, "\r\n") {
		return fmt.Errorf("%s: expected the API key alone on one line", from)
	}
	o.Settings.Key = key
	return nil
}

// Validate checks the flags.
func (o *InstallOptions) Validate() error {
	if err := o.Settings.Validate(); err != nil {
		return err
	}
	if err := o.Pending.Validate(); err != nil {
		return err
	}
	if err := o.Guardrails.Validate(); err != nil {
		return err
	}
	if err := o.Templates.Validate(); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Label(o.Name); len(errs) > 0 {
		return fmt.Errorf("--name %q: %s", o.Name, strings.Join(errs, "; "))
	}
	if o.Image == "" {
		return fmt.Errorf("--image must not be empty")
	}
	if o.Replicas < 1 {
		return fmt.Errorf("--replicas %d: expected 1 or more", o.Replicas)
	}
	switch o.DryRun {
	case "none", "server":
	case "client":
		if o.ForceConflicts {
			return fmt.Errorf("--force-conflicts does not work with --dry-run=client (did you mean --dry-run=server?)")
		}
	default:
		return fmt.Errorf(`--dry-run %q: expected "none", "server" or "client"`, o.DryRun)
	}
	if o.PrintFlags.OutputFlagSpecified() {
		if _, err := o.PrintFlags.ToPrinter(); err != nil {
			return err
		}
	}
	return nil
}

// installObject is one object to apply, as apply configuration and as data.
type installObject struct {
	kind  string // e.g. deployment.apps, for output lines
	name  string
	apply func(ctx context.Context, opts metav1.ApplyOptions) error
	value any
}

func (o *InstallOptions) list() []installObject {
	ob := o.objects
	var out []installObject
	ns := *ob.ServiceAccount.Namespace
	out = append(out, installObject{"serviceaccount", *ob.ServiceAccount.Name, func(ctx context.Context, opts metav1.ApplyOptions) error {
		_, err := o.client.CoreV1().ServiceAccounts(ns).Apply(ctx, ob.ServiceAccount, opts)
		return err
	}, ob.ServiceAccount})
	if ob.Secret != nil {
		out = append(out, installObject{"secret", *ob.Secret.Name, func(ctx context.Context, opts metav1.ApplyOptions) error {
			_, err := o.client.CoreV1().Secrets(ns).Apply(ctx, ob.Secret, opts)
			return err
		}, ob.Secret})
	}
	if ob.ConfigMap != nil {
		out = append(out, installObject{"configmap", *ob.ConfigMap.Name, func(ctx context.Context, opts metav1.ApplyOptions) error {
			_, err := o.client.CoreV1().ConfigMaps(ns).Apply(ctx, ob.ConfigMap, opts)
			return err
		}, ob.ConfigMap})
	}
	if ob.Role != nil {
		out = append(out, installObject{"role.rbac.authorization.k8s.io", *ob.Role.Name, func(ctx context.Context, opts metav1.ApplyOptions) error {
			_, err := o.client.RbacV1().Roles(ns).Apply(ctx, ob.Role, opts)
			return err
		}, ob.Role}, installObject{"rolebinding.rbac.authorization.k8s.io", *ob.RoleBinding.Name, func(ctx context.Context, opts metav1.ApplyOptions) error {
			_, err := o.client.RbacV1().RoleBindings(ns).Apply(ctx, ob.RoleBinding, opts)
			return err
		}, ob.RoleBinding})
	}
	out = append(out, installObject{"deployment.apps", *ob.Deployment.Name, func(ctx context.Context, opts metav1.ApplyOptions) error {
		_, err := o.client.AppsV1().Deployments(ns).Apply(ctx, ob.Deployment, opts)
		return err
	}, ob.Deployment})
	return out
}

// Run applies the objects, or prints them with --dry-run=client.
func (o *InstallOptions) Run(ctx context.Context) error {
	objects := o.list()
	if o.DryRun == "client" {
		return o.printObjects(objects)
	}
	opts := metav1.ApplyOptions{FieldManager: InstallFieldManager, Force: o.ForceConflicts}
	suffix := ""
	if o.DryRun == "server" {
		opts.DryRun = []string{metav1.DryRunAll}
		suffix = " (server dry run)"
	}
	for _, obj := range objects {
		if err := obj.apply(ctx, opts); err != nil {
			if apierrors.IsConflict(err) {
				return fmt.Errorf("%s/%s: %v\n%s", obj.kind, obj.name, err, conflictHint)
			}
			return fmt.Errorf("%s/%s: %w", obj.kind, obj.name, err)
		}
		fmt.Fprintf(o.Out, "%s/%s serverside-applied%s\n", obj.kind, obj.name, suffix)
	}
	return nil
}

const conflictHint = `Please review the fields above--they currently have other managers. To resolve:
* If you intend to manage these fields, re-run with --force-conflicts.
* If you do not, remove them from your change (flags) or from the other manager.
* You may co-own fields by giving them the same values the other manager set.`

// printObjects prints the objects as a List that `kubectl apply -f -` takes.
func (o *InstallOptions) printObjects(objects []installObject) error {
	list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{}}}
	for _, obj := range objects {
		raw, err := json.Marshal(obj.value)
		if err != nil {
			return err
		}
		var u map[string]any
		if err := json.Unmarshal(raw, &u); err != nil {
			return err
		}
		list.Items = append(list.Items, unstructured.Unstructured{Object: u})
	}
	if !o.PrintFlags.OutputFlagSpecified() {
		format := "yaml"
		o.PrintFlags.OutputFormat = &format
	}
	printer, err := o.PrintFlags.ToPrinter()
	if err != nil {
		return err
	}
	return printer.PrintObj(list, o.Out)
}
