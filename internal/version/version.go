// Package version holds the build's version, stamped by the release build
// with -ldflags "-X github.com/kubectl-prefect/kubectl-prefect/internal/version.Version=v1.2.3".
package version

// Version, Commit and Date describe the build; "dev" for local builds.
var (
	Version = "dev"
	Commit  = "unknown"
	Date    = "unknown"
)

// ImageRepository is where the agent's image is published.
const ImageRepository = "ghcr.io/kubectl-prefect/kubectl-prefect"

// AgentImage is the agent image matching this build.
func AgentImage() string {
	if Version == "dev" {
		return ImageRepository + ":latest"
	}
	return ImageRepository + ":" + Version
}
