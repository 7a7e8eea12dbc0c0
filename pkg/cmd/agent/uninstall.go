package agent

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/install"
)

// UninstallOptions are the options of `kubectl prefect agent uninstall`.
type UninstallOptions struct {
	configFlags *genericclioptions.ConfigFlags
	Name        string

	namespace string
	client    kubernetes.Interface
	genericiooptions.IOStreams
}

// NewCmdUninstall is `kubectl prefect agent uninstall`.
func NewCmdUninstall(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &UninstallOptions{configFlags: configFlags, IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what `agent install` created",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "prefect-agent", "Name the agent was installed with")
	return cmd
}

// Complete resolves the namespace and the client.
func (o *UninstallOptions) Complete() error {
	ns, err := namespace(o.configFlags)
	if err != nil {
		return err
	}
	o.namespace = ns
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return err
	}
	o.client, err = kubernetes.NewForConfig(cfg)
	return err
}

// Validate checks the name.
func (o *UninstallOptions) Validate() error {
	if o.Name == "" {
		return fmt.Errorf("--name must not be empty")
	}
	return nil
}

// Run deletes the installation's objects that carry its labels.
func (o *UninstallOptions) Run(ctx context.Context) error {
	sel := metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: install.Labels(o.Name)})}
	ns := o.namespace
	type deleter struct {
		kind  string
		names func() ([]string, error)
		del   func(name string) error
	}
	fg := metav1.DeletePropagationForeground
	opts := metav1.DeleteOptions{PropagationPolicy: &fg}
	deleters := []deleter{
		{"deployment.apps", func() ([]string, error) {
			l, err := o.client.AppsV1().Deployments(ns).List(ctx, sel)
			return names(err, len(l.Items), func(i int) string { return l.Items[i].Name })
		}, func(n string) error { return o.client.AppsV1().Deployments(ns).Delete(ctx, n, opts) }},
		{"rolebinding.rbac.authorization.k8s.io", func() ([]string, error) {
			l, err := o.client.RbacV1().RoleBindings(ns).List(ctx, sel)
			return names(err, len(l.Items), func(i int) string { return l.Items[i].Name })
		}, func(n string) error { return o.client.RbacV1().RoleBindings(ns).Delete(ctx, n, opts) }},
		{"role.rbac.authorization.k8s.io", func() ([]string, error) {
			l, err := o.client.RbacV1().Roles(ns).List(ctx, sel)
			return names(err, len(l.Items), func(i int) string { return l.Items[i].Name })
		}, func(n string) error { return o.client.RbacV1().Roles(ns).Delete(ctx, n, opts) }},
		{"configmap", func() ([]string, error) {
			l, err := o.client.CoreV1().ConfigMaps(ns).List(ctx, sel)
			return names(err, len(l.Items), func(i int) string { return l.Items[i].Name })
		}, func(n string) error { return o.client.CoreV1().ConfigMaps(ns).Delete(ctx, n, opts) }},
		{"secret", func() ([]string, error) {
			l, err := o.client.CoreV1().Secrets(ns).List(ctx, sel)
			return names(err, len(l.Items), func(i int) string { return l.Items[i].Name })
		}, func(n string) error { return o.client.CoreV1().Secrets(ns).Delete(ctx, n, opts) }},
		{"serviceaccount", func() ([]string, error) {
			l, err := o.client.CoreV1().ServiceAccounts(ns).List(ctx, sel)
			return names(err, len(l.Items), func(i int) string { return l.Items[i].Name })
		}, func(n string) error { return o.client.CoreV1().ServiceAccounts(ns).Delete(ctx, n, opts) }},
	}
	found := 0
	for _, d := range deleters {
		list, err := d.names()
		if err != nil {
			return fmt.Errorf("listing %s: %w", d.kind, err)
		}
		for _, n := range list {
			if err := d.del(n); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting %s %q: %w", d.kind, n, err)
			}
			found++
			fmt.Fprintf(o.Out, "%s %q deleted\n", d.kind, n)
		}
	}
	if found == 0 {
		fmt.Fprintf(o.ErrOut, "No agent named %s is installed in the %s namespace.\n", o.Name, ns)
	}
	return nil
}

func names(err error, n int, name func(int) string) ([]string, error) {
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i := range out {
		out[i] = name(i)
	}
	return out, nil
}
