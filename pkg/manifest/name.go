package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultJobPrefix names Jobs whose template has no metadata.name.
const DefaultJobPrefix = "prefect-job"

// maxPrefix keeps prefix, dash and identifier within a label value's 63 characters.
const maxPrefix = 48

// JobName is the one name a submission of a flow run version can have, so a
// retried create meets AlreadyExists instead of making a second Job. The
// identifier, a hash of the run id and version (and, for the relaunch of a
// Running run whose task runs retry, of the relaunch key), is also the Job's
// prefect.io/identifier label.
func JobName(prefix, flowRunID string, version int, relaunch string) (name, identifier string, err error) {
	if prefix == "" {
		prefix = DefaultJobPrefix
	}
	if errs := validation.IsDNS1123Subdomain(prefix); len(errs) > 0 {
		return "", "", fmt.Errorf("job template metadata.name %q cannot start a Job name: %s", prefix, strings.Join(errs, "; "))
	}
	if len(prefix) > maxPrefix {
		prefix = strings.TrimRight(prefix[:maxPrefix], "-.")
	}
	key := fmt.Sprintf("%s/%d", flowRunID, version)
	if relaunch != "" {
		key += "/" + relaunch
	}
	sum := sha256.Sum256([]byte(key))
	identifier = hex.EncodeToString(sum[:])[:12]
	return prefix + "-" + identifier, identifier, nil
}
