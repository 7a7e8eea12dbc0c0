package manifest

// DefaultJobPrefix names Jobs whose template has no metadata.name.
const DefaultJobPrefix = "prefect-job"

// maxPrefix keeps prefix, dash and identifier within a label value's 63 characters.
const maxPrefix = 48

// JobName is the name and identifier of the Job of the flow run's
// submission from the state at version (Submission.JobName).
func JobName(prefix, flowRunID string, version int, relaunch string) (name, identifier string, err error) {
	s := Submission{RunID: flowRunID, Version: version, Relaunch: relaunch}
	name, err = s.JobName(prefix)
	if err != nil {
		return "", "", err
	}
	return name, s.Identifier(), nil
}
