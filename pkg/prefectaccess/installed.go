package prefectaccess

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
)

// Installed finds the agent installed in a namespace.
type Installed interface {
	// Lookup reads the agent's settings from its Deployment (name, or the
	// only one when ""), and its key from its Secret when withKey.
	Lookup(ctx context.Context, name string, withKey bool) (installedAgent, error)
}

// installedAgent is what the plugin learnt from an installed agent.
type installedAgent struct {
	API, Backend, TenantID, AgentName string
	Labels                            []string
	From                              string
	key                               string
}

// InCluster looks for the agent with the user's own permissions.
type InCluster struct {
	Client    kubernetes.Interface
	Namespace string
}

// agentSelector finds what `agent install` made (pkg/install.Labels).
const agentSelector = "app.kubernetes.io/name=prefect-agent"

// Lookup implements Installed.
func (c InCluster) Lookup(ctx context.Context, name string, withKey bool) (installedAgent, error) {
	dep, err := c.deployment(ctx, name)
	if err != nil {
		return installedAgent{}, err
	}
	from := fmt.Sprintf("the agent installed in namespace %s (Deployment %s)", c.Namespace, dep.Name)
	container, ok := agentContainer(dep)
	if !ok {
		return installedAgent{}, fmt.Errorf("%s has no containers", from)
	}
	o := agentcli.NewStartOptions()
	fs := pflag.NewFlagSet(dep.Name, pflag.ContinueOnError)
	fs.SetOutput(nopWriter{})
	o.AddFlags(fs)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	if err := fs.Parse(agentcli.TrimLegacyArgs(container.Args)); err != nil {
		return installedAgent{}, fmt.Errorf("reading the arguments of %s: %w", from, err)
	}
	env := map[string]string{}
	var keyRef *corev1.SecretKeySelector
	for _, e := range container.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil && (e.Name == "PREFECT__CLOUD__API_KEY" || e.Name == "PREFECT__CLOUD__AGENT__AUTH_TOKEN") && keyRef == nil:
			keyRef = e.ValueFrom.SecretKeyRef
		}
	}
	if err := agentcli.ApplyEnvFallbacksFrom(fs, agentcli.SettingsEnvFallbacks, func(k string) string { return env[k] }); err != nil {
		return installedAgent{}, fmt.Errorf("reading the environment of %s: %w", from, err)
	}
	s := o.Settings
	labels := s.Labels
	if fs.Changed("label") {
		labels = agent.UniqueLabels(labels) // as `agent start` takes its --label flags
	}
	out := installedAgent{API: s.API, Backend: s.Backend, TenantID: s.TenantID, AgentName: s.AgentName, Labels: labels, From: from, key: s.Key}
	if out.API == "" {
		out.API = "https://api.prefect.io"
		if out.Backend == "server" {
			out.API = "http://localhost:4200"
		}
	}
	if !withKey || out.key != "" || keyRef == nil {
		return out, nil
	}
	secret, err := c.Client.CoreV1().Secrets(c.Namespace).Get(ctx, keyRef.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return installedAgent{}, fmt.Errorf("the Prefect API key of %s is in Secret %s, which you may not read (get secrets): pass the key yourself with --key-file FILE (or PREFECT__CLOUD__API_KEY), or ask for get on that Secret", from, keyRef.Name)
	case err != nil:
		return installedAgent{}, fmt.Errorf("reading the Prefect API key of %s from Secret %s: %w", from, keyRef.Name, err)
	}
	key := strings.TrimSpace(string(secret.Data[keyRef.Key]))
	if key == "" {
		return installedAgent{}, fmt.Errorf("secret %s of %s has no key %q: pass the API key with --key-file FILE", keyRef.Name, from, keyRef.Key)
	}
	out.key = key
	return out, nil
}

// deployment finds the agent's Deployment.
func (c InCluster) deployment(ctx context.Context, name string) (*appsv1.Deployment, error) {
	if name != "" {
		dep, err := c.Client.AppsV1().Deployments(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the agent's Deployment %s in namespace %s (--agent): %w", name, c.Namespace, err)
		}
		return dep, nil
	}
	list, err := c.Client.AppsV1().Deployments(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
	if apierrors.IsForbidden(err) {
		return nil, fmt.Errorf("you may not list Deployments in namespace %s to find the installed agent's settings: pass --api (and --key-file for Prefect Cloud, --agent-name if not \"agent\")", c.Namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("looking for the agent installed in namespace %s: %w", c.Namespace, err)
	}
	switch len(list.Items) {
	case 0:
		return nil, fmt.Errorf("no agent installed in namespace %s (no Deployment labelled %s): pass --api (and --key-file for Prefect Cloud), or use -n with the agent's namespace", c.Namespace, agentSelector)
	case 1:
		return &list.Items[0], nil
	}
	var names []string
	for _, d := range list.Items {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("%d agents are installed in namespace %s (%s): choose one with --agent NAME", len(names), c.Namespace, strings.Join(names, ", "))
}

// agentContainer is the container running the agent: "agent", else the first.
func agentContainer(dep *appsv1.Deployment) (corev1.Container, bool) {
	cs := dep.Spec.Template.Spec.Containers
	for _, c := range cs {
		if c.Name == "agent" {
			return c, true
		}
	}
	if len(cs) == 0 {
		return corev1.Container{}, false
	}
	return cs[0], true
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
