package agentcli

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeFlags are prefect-agent's Kubernetes connection flags: a small subset
// of kubectl's, read with client-go's loader. In a pod without a kubeconfig
// the in-cluster service account is used.
type KubeFlags struct {
	Kubeconfig string
	Context    string
	Namespace  string
}

// AddFlags registers --kubeconfig, --context and -n/--namespace.
func (f *KubeFlags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else the pod's service account)")
	fs.StringVar(&f.Context, "context", "", "The name of the kubeconfig context to use")
	fs.StringVarP(&f.Namespace, "namespace", "n", "", "Namespace of the flow run Jobs (default: $NAMESPACE, the context's namespace, or the pod's own) [NAMESPACE]")
}

func (f *KubeFlags) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.Kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.Context})
}

// ToNamespace is -n, else NAMESPACE (the original agent's variable), else the
// kubeconfig context's namespace, else the pod's own when in a cluster.
func (f *KubeFlags) ToNamespace() (string, error) {
	if f.Namespace != "" {
		return f.Namespace, nil
	}
	if ns := os.Getenv("NAMESPACE"); ns != "" {
		return ns, nil
	}
	ns, _, err := f.clientConfig().Namespace()
	if clientcmd.IsEmptyConfig(err) {
		return "default", nil // as kubectl; ToRESTConfig says what is missing
	}
	return ns, err
}

// ToRESTConfig is the kubeconfig's connection, or the in-cluster one.
func (f *KubeFlags) ToRESTConfig() (*rest.Config, error) {
	cfg, err := f.clientConfig().ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, fmt.Errorf("no kubeconfig (--kubeconfig, KUBECONFIG or ~/.kube/config) and not running in a pod")
	}
	return cfg, err
}
