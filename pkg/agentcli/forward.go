package agentcli

import (
	"strings"

	"github.com/spf13/pflag"
)

// ChangedArgs turns the flags among names that were given on fs into
// arguments for an installed agent, in the order of names, so that what is
// left at its default keeps following the agent's own defaults.
func ChangedArgs(fs *pflag.FlagSet, names ...string) []string {
	var args []string
	for _, name := range names {
		f := fs.Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		value := f.Value.String()
		if slice, ok := f.Value.(pflag.SliceValue); ok {
			value = strings.Join(slice.GetSlice(), ",")
		}
		args = append(args, "--"+name+"="+value)
	}
	return args
}

// TemplateFlagNames are the template flags an installed agent is given.
var TemplateFlagNames = []string{"allowed-template-locations", "strict-templates"}

// PendingFlagNames are the pending policy's flags an installed agent is given.
var PendingFlagNames = []string{"quota-timeout", "admission-timeout", "unschedulable-timeout", "scale-up-timeout", "missing-object-timeout", "image-pull-grace"}
