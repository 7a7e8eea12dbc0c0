// Package prefectaccess gives the plugin's commands (runs, logs) their
// connection to the Prefect API: from flags and the 1.x environment
// variables, as `agent start` reads them, and for whatever is not given,
// from the agent installed in the namespace (its Deployment's arguments and
// environment, and its key Secret, read with the user's own permissions).
// The key is never printed.
package prefectaccess

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/agentcli"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// Flags are the Prefect connection flags of a plugin command.
type Flags struct {
	API       string
	Key       string
	KeyFile   string
	TenantID  string
	Backend   string
	AgentName string
	// AgentLabels are the agent's labels: with its name, they make its
	// identity, the prefect.io/agent label of its Jobs.
	AgentLabels []string
	// Agent names the installed agent's Deployment (default: the only one).
	Agent string
	// WithLabels, set before AddFlags, adds --agent-label, and has Resolve
	// learn the agent's labels from the installed agent when neither the
	// flag nor its variable gives them (`runs` selects the agent's Jobs by
	// its identity).
	WithLabels bool

	fs *pflag.FlagSet
}

// envFlags are the flags that fall back to the agent's 1.x variables.
var envFlags = []string{"api", "key", "tenant-id", "backend", "agent-name"}

// labelsFlag is the flag of the agent's labels; it falls back to the
// variable of `agent start --label`.
const labelsFlag = "agent-label"

// AddFlags registers the flags (no shorthands: -a, -k, -l and -b are
// taken or ambiguous among kubectl's and the commands' own flags).
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.API, "api", "", "Prefect API address (default: the installed agent's) [PREFECT__CLOUD__API]")
	fs.StringVar(&f.Key, "key", "", "Prefect API key (default: the installed agent's key Secret, if you may read it) [PREFECT__CLOUD__API_KEY]")
	fs.StringVar(&f.KeyFile, "key-file", "", "File holding the Prefect API key")
	fs.StringVar(&f.TenantID, "tenant-id", "", "Prefect tenant id (default: the installed agent's, else Server's first tenant or the key's) [PREFECT__CLOUD__TENANT_ID]")
	fs.StringVar(&f.Backend, "backend", "", "Prefect backend, server or cloud (default: the installed agent's) [PREFECT__BACKEND]")
	fs.StringVar(&f.AgentName, "agent-name", "", "The agent's name in Prefect (default: the installed agent's) [PREFECT__CLOUD__AGENT__NAME]")
	if f.WithLabels {
		fs.StringArrayVar(&f.AgentLabels, labelsFlag, nil, "The agent's label; repeat for more (default: the installed agent's) [PREFECT__CLOUD__AGENT__LABELS]")
	}
	fs.StringVar(&f.Agent, "agent", "", "The installed agent's Deployment to read the connection from (default: the only one in the namespace)")
	f.fs = fs
}

// Access is a resolved connection to Prefect.
type Access struct {
	API, Backend, TenantID, AgentName string
	AgentLabels                       []string
	// From says where the settings came from, for messages.
	From string
	// Client talks to the API; its key never appears in errors.
	Client *prefect.Client
	key    string
}

// AgentIdentity is the agent's identity, the prefect.io/agent label of the
// Jobs it creates (its name and labels, as the agent computes it).
func (a *Access) AgentIdentity() string { return agent.AgentIdentity(a.AgentName, a.AgentLabels) }

// HasKey tells whether a key is sent (the key itself is never exposed).
func (a *Access) HasKey() bool { return a.key != "" }

// given reads the flags and their environment variables, and tells whether
// the agent's labels were among them.
func (f *Flags) given(getenv func(string) string) (Flags, bool, error) {
	out := *f
	labelsGiven := f.AgentLabels != nil
	if f.fs != nil {
		fallbacks := map[string][]string{labelsFlag: agentcli.SettingsEnvFallbacks["label"]}
		for _, name := range envFlags {
			fallbacks[name] = agentcli.SettingsEnvFallbacks[name]
		}
		labelsGiven = f.fs.Changed(labelsFlag)
		for _, name := range fallbacks[labelsFlag] {
			labelsGiven = labelsGiven || getenv(name) != ""
		}
		if err := agentcli.ApplyEnvFallbacksFrom(f.fs, fallbacks, getenv); err != nil {
			return out, false, err
		}
		out = *f
		if f.fs.Changed(labelsFlag) {
			out.AgentLabels = agent.UniqueLabels(out.AgentLabels)
		}
	}
	switch {
	case out.KeyFile != "" && out.Key != "":
		return out, false, fmt.Errorf("--key and --key-file both give the API key: use one")
	case out.KeyFile != "":
		raw, err := os.ReadFile(out.KeyFile)
		if err != nil {
			return out, false, fmt.Errorf("reading the API key from --key-file %s: %w", out.KeyFile, err)
		}
		out.Key = strings.TrimSpace(string(raw))
		if out.Key == "" || strings.ContainsAny(out.Key, "\r\n") {
			return out, false, fmt.Errorf("--key-file %s: expected the API key alone on one line", out.KeyFile)
		}
	}
	if out.Backend != "" && out.Backend != "server" && out.Backend != "cloud" {
		return out, false, fmt.Errorf("--backend %q: expected server or cloud", out.Backend)
	}
	return out, labelsGiven, nil
}

// complete reports whether the flags say everything needed without the
// installed agent: an API address and, for Cloud, a key.
func (f Flags) complete() bool {
	return f.API != "" && f.AgentName != "" && (f.Backend == "server" || f.Key != "")
}

// Resolve builds the connection: flags and environment first, then the
// installed agent for what they leave out (looked up only when needed).
func (f *Flags) Resolve(ctx context.Context, installed Installed) (*Access, error) {
	given, labelsGiven, err := f.given(os.Getenv)
	if err != nil {
		return nil, err
	}
	from := "flags and environment"
	incomplete := !given.complete()
	if (incomplete || (f.WithLabels && !labelsGiven)) && installed != nil {
		inst, err := installed.Lookup(ctx, given.Agent, incomplete && given.Key == "")
		switch {
		case err != nil && given.API == "":
			return nil, err
		case err == nil:
			if incomplete {
				from = inst.From
				given.API = or(given.API, inst.API)
				given.Backend = or(given.Backend, inst.Backend)
				given.TenantID = or(given.TenantID, inst.TenantID)
				given.AgentName = or(given.AgentName, inst.AgentName)
				given.Key = or(given.Key, inst.key)
			}
			// The installed agent's labels, if it is the agent named.
			if !labelsGiven && (given.AgentName == "" || given.AgentName == inst.AgentName) {
				given.AgentLabels = inst.Labels
			}
		}
	}
	if given.API == "" {
		return nil, fmt.Errorf("no Prefect API address: pass --api (or set PREFECT__CLOUD__API), or install the agent in this namespace with `kubectl prefect agent install`")
	}
	if given.Backend == "" {
		given.Backend = "server"
		if strings.Contains(given.API, "api.prefect.io") {
			given.Backend = "cloud"
		}
	}
	if given.AgentName == "" {
		given.AgentName = "agent"
	}
	a := &Access{API: given.API, Backend: given.Backend, TenantID: given.TenantID, AgentName: given.AgentName, AgentLabels: given.AgentLabels, From: from, key: given.Key}
	a.Client = prefect.NewClient(prefect.Config{API: a.API, APIKey: a.key, TenantID: a.TenantID, MaxAttempts: 3, Backoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second})
	return a, nil
}

// Connect resolves the tenant, so requests that need it carry it.
func (a *Access) Connect(ctx context.Context) error {
	tenant, err := a.Client.ResolveTenant(ctx, a.Backend)
	if err != nil {
		return fmt.Errorf("connecting to the Prefect API at %s (settings from %s): %w", a.API, a.From, err)
	}
	a.TenantID = tenant
	a.Client.SetTenantID(tenant)
	return nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
