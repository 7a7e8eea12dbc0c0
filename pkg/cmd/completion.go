package cmd

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// registerCompletions completes namespaces for -n and flow run ids for
// --flow-run from the cluster, as kubectl completes resource names.
func registerCompletions(root *cobra.Command, configFlags *genericclioptions.ConfigFlags) {
	_ = root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		client, ctx, cancel := completionClient(configFlags)
		if client == nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer cancel()
		list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, ns := range list.Items {
			out = append(out, ns.Name)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	for _, sub := range root.Commands() {
		if sub.Name() != "jobs" {
			continue
		}
		_ = sub.RegisterFlagCompletionFunc("flow-run", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
			client, ctx, cancel := completionClient(configFlags)
			if client == nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			defer cancel()
			ns, _, _ := configFlags.ToRawKubeConfigLoader().Namespace()
			list, err := client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: manifest.LabelIdentifier})
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []string
			for _, j := range list.Items {
				out = append(out, j.Labels[manifest.LabelFlowRunID]+"\t"+j.Name)
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		})
	}
}

func completionClient(configFlags *genericclioptions.ConfigFlags) (kubernetes.Interface, context.Context, context.CancelFunc) {
	cfg, err := configFlags.ToRESTConfig()
	if err != nil {
		return nil, nil, nil
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	return client, ctx, cancel
}
